"""Baseline (c): transformers `generate` per request in a plain FastAPI handler.

What a first attempt at serving looks like: each request runs its own `generate` with a
streamer, one at a time (a lock: a model shared across threads without batching gains
nothing on a CPU and risks thrashing), no KV cache sharing, no batching.
Run: python bench/inference/naive_server.py PORT MODEL_FOLDER
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

app = FastAPI()
lock = threading.Lock()
tokenizer = model = None


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok" if model is not None else "loading"}


@app.post("/v1/chat/completions")
def chat(body: dict) -> StreamingResponse:
    ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    max_tokens = int(body.get("max_tokens", 64))

    def events() -> Iterator[str]:
        with lock:
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            kwargs = {"max_new_tokens": max_tokens, "do_sample": False, "streamer": streamer}
            if body.get("ignore_eos"):
                kwargs["min_new_tokens"] = max_tokens
            worker = threading.Thread(target=model.generate, args=(ids,), kwargs=kwargs)
            worker.start()
            cid = f"chatcmpl-{uuid.uuid4().hex}"
            for text in streamer:
                if text:
                    chunk = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
            worker.join()
        usage = {"completion_tokens": max_tokens, "prompt_tokens": ids.shape[1]}
        yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def main() -> None:
    global tokenizer, model
    port, folder = int(sys.argv[1]), sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
