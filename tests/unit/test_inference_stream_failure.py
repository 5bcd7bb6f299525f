"""Inference's own stream when the model fails mid-answer (issue 11: an error event, not a quiet
end): the real app in process on a tiny random model whose forward pass breaks after a few steps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from inference.app import create_app
from inference.settings import InferenceSettings

TOKEN = "app-token-for-tests-0123456789"


def test_a_generation_failing_mid_stream_ends_with_an_openai_error_event(tiny_llama_folder: Path) -> None:
    settings = InferenceSettings.model_validate(
        {
            "APP_PORT": "1",
            "DAPR_HTTP_PORT": "9",  # no sidecar: the routes still serve
            "APP_API_TOKEN": TOKEN,
            "INFERENCE_MODEL": str(tiny_llama_folder),
            "INFERENCE_MODEL_NAME": "tiny",
        }
    )
    app = create_app(settings)

    async def go() -> str:
        async with app.router.lifespan_context(app):
            for _ in range(3000):  # loading runs in the background
                if app.state.models.ready:
                    break
                await asyncio.sleep(0.01)
            forward = app.state.models.current.loaded.forward
            passes = 0
            decode = forward.decode

            def failing_decode(*args, **kwargs):
                nonlocal passes
                passes += 1
                if passes > 2:  # the prompt and two decode passes go through, then the device fails
                    raise RuntimeError("the device went away")
                return decode(*args, **kwargs)

            forward.decode = failing_decode
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://inference", timeout=30) as client:
                body = {
                    "messages": [{"role": "user", "content": "Hello"}],
                    "max_tokens": 20,
                    "ignore_eos": True,
                    "stream": True,
                }
                response = await client.post("/v1/chat/completions", json=body, headers={"dapr-api-token": TOKEN})
                return response.text

    text = asyncio.run(asyncio.wait_for(go(), 60))
    events = [block.removeprefix("data: ") for block in text.strip().split("\n\n")]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in chunks)
    error = chunks[-1]["error"]
    assert error["type"] == "server_error" and error["message"] == "The generation failed."
    assert not any(c.get("choices") and c["choices"][0].get("finish_reason") for c in chunks)
