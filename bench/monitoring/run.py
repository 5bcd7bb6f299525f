"""Monitoring overhead benchmark: chat with and without the monitoring stack running.

Needs the platform running as `make up` runs it (every app beside its sidecar on dapr.yaml's
ports). The stack (Prometheus scraping every app and sidecar, Alertmanager, VictoriaLogs, vlagent
tailing every log file) is stopped and started between rounds with scripts/infra.sh, alternating
off/on so drift of the machine falls on both. Each round sends the same streamed chat requests
through the gateway (greedy, exactly MAX_TOKENS output tokens via `ignore_eos`) at a concurrency.

Measured at the client: time to first token (first content delta) p50 and aggregate output
tokens per second (tokens of every request over the round's wall time). The stack's added
memory is the resident set (RSS) of its four processes after the last round with it on.
Prints one table and writes JSON to bench/results/.

    make up   # in another terminal
    uv run python bench/monitoring/run.py [--rounds 2] [--requests 12] [--concurrency 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "http://127.0.0.1:8080"
STACK = ("prometheus", "alertmanager", "victorialogs", "vlagent")
QUESTIONS = [
    "Name three colours of the rainbow.",
    "What is the capital of France?",
    "Give one tip for writing clear emails.",
    "Why is the sky blue?",
]


def api_key() -> str:
    secrets = json.loads((ROOT / ".data" / "secrets.json").read_text())
    return secrets["gateway-api-keys"].split(",")[0]


def infra(action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), action, "monitoring"], check=True, capture_output=True)


def stack_rss_mib() -> dict[str, float]:
    """RSS of each running process of the stack, from the pid files infra.sh keeps."""
    rss = {}
    for name in STACK:
        pid_file = ROOT / ".data" / name / f"{name}.pid"
        if pid_file.exists():
            rss[name] = psutil.Process(int(pid_file.read_text())).memory_info().rss / 2**20
    return rss


async def one_chat(client: httpx.AsyncClient, question: str, max_tokens: int) -> float:
    """Stream one whole answer; its time to first token in seconds."""
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                event = json.loads(line[6:])
                if event.get("choices") and (event["choices"][0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
    if first is None:
        raise RuntimeError("no content arrived")
    return first - started


async def one_round(requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {api_key()}"}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=GATEWAY, headers=headers, timeout=300) as client:

        async def bounded(i: int) -> float:
            async with gate:
                return await one_chat(client, QUESTIONS[i % len(QUESTIONS)], max_tokens)

        await one_chat(client, QUESTIONS[0], max_tokens)  # warm the pipeline
        started = time.perf_counter()
        ttfts = await asyncio.gather(*(bounded(i) for i in range(requests)))
        wall = time.perf_counter() - started
    return {"ttft_p50_s": statistics.median(ttfts), "tokens_per_s": requests * max_tokens / wall, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    rss: dict[str, float] = {}
    for _ in range(args.rounds):
        for state in ("off", "on"):
            infra("stop" if state == "off" else "start")
            results[state].append(asyncio.run(one_round(args.requests, args.concurrency, args.max_tokens)))
            if state == "on":
                rss = stack_rss_mib()
    infra("start")

    def median(state: str, key: str) -> float:
        return statistics.median(r[key] for r in results[state])

    rows = [
        ("TTFT p50 (s)", median("off", "ttft_p50_s"), median("on", "ttft_p50_s")),
        ("tokens/s (aggregate)", median("off", "tokens_per_s"), median("on", "tokens_per_s")),
    ]
    print(f"{'measure':<22}{'stack off':>12}{'stack on':>12}{'on/off':>9}")  # noqa: T201
    for name, off, on in rows:
        print(f"{name:<22}{off:>12.3f}{on:>12.3f}{on / off:>9.3f}")  # noqa: T201
    print(f"stack RSS (MiB): {', '.join(f'{k} {v:.0f}' for k, v in rss.items())}; total {sum(rss.values()):.0f}")  # noqa: T201
    out = ROOT / "bench" / "results" / f"monitoring-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rounds": results, "rss_mib": rss}, indent=2))


if __name__ == "__main__":
    main()
