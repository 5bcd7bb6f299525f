"""Start-up work (genai_platform.startup): retried until done, readiness says why it is not, fatal errors stop it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from fakes import FakeDapr
from genai_platform.startup import StartupWork, startup_done


def test_work_is_retried_until_it_succeeds_and_readiness_follows_it() -> None:
    attempts: list[int] = []

    async def seed() -> None:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise ConnectionError("the state store is restarting")

    async def scenario():
        app = SimpleNamespace(state=SimpleNamespace(startup=StartupWork("seeding the prompt", seed)))
        before = await startup_done(app)
        app.state.startup.start(FakeDapr().sidecar())
        while app.state.startup.pending is not None:
            assert await startup_done(app) == "seeding the prompt"
            await asyncio.sleep(0.05)
        return before, await startup_done(app)

    before, after = asyncio.run(scenario())
    assert before is None  # not started: nothing to wait for
    assert after is None and attempts == [0, 1]


def test_a_fatal_error_stops_the_retries_and_stays_in_readiness() -> None:
    attempts: list[int] = []

    async def seed() -> None:
        attempts.append(1)
        raise FileNotFoundError("/data/base-model holds no .safetensors weights")

    async def scenario():
        work = StartupWork("registering the base model", seed, fatal=(FileNotFoundError,))
        work.start(FakeDapr().sidecar())
        await asyncio.wait_for(work._task, timeout=5)
        await work.stop()
        return work.pending

    reason = asyncio.run(scenario())
    assert reason == "registering the base model failed: /data/base-model holds no .safetensors weights"
    assert attempts == [1]
