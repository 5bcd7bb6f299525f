"""Chat pipeline benchmark: what the gateway's pipeline adds to a streamed answer, stage by stage.

Targets, each sent the same questions (greedy, exactly MAX_TOKENS output tokens: end of
sequence suppressed with `ignore_eos`), streamed:
  (a) inference      - the inference app called directly on its port (app token)
  (a') inference-grounded - the same, sent the very messages the gateway sends for (d): the
                       rendered grounding prompt with the retrieved chunks (built by the gateway's
                       own ChatPipeline.plan through its sidecar), so (d) is compared with the
                       same prompt's prefill and the same greedy answer
  (b) inference-dapr - the same app through its daprd (service invocation)
  (c) gateway        - the gateway's /v1/chat/completions with no collection:
                       input rails -> inference -> output rails, each through Dapr
  (d) gateway-rag    - the same with `model: "rag/<collection>"`: input rails -> retrieval ->
                       prompt render -> inference -> output rails
  (e) gateway-40ms   - (c) on a second gateway whose output checks are batched by time (one guard
                       call per 40 ms window) instead of one call in flight at a time

Targets are interleaved: at each concurrency level, waves of that many requests sent at once go
to every target in turn (the order rotating each wave), so a swing of the machine's load hits
every target alike instead of whichever ran during it. Measured per request at the client: time
to first token (TTFT: the first content delta), the whole request, how many events carried text
(one per token direct; one per piece the guard released through the gateway, whose output rails
hold back only what a rail could still judge differently) and how many whitespace-separated
words the answer has (the most pieces a whole-word release can make). Per target and level: the
CPU time each app and each daprd spent per answer (psutil), which shows where the gateway's work
beyond inference's goes on cores that inference needs too. From the gateway's timings (the
`Server-Timing` header, repeated with every stage in the stream's last event): each stage's
duration. Also measured: one guard stream step through Dapr (the gateway's sidecar to the
guard's), its time and CPU cost, what a round trip per token adds to each token. Prints one
table with TTFT ratios against (a), one of stage medians, one of CPU per answer and one of issue 12's
targets (met or missed, by how much), with the machine's load average, and writes JSON to
bench/results/. Also timed through the gateway's sidecar, one step at a time: the RAG path's
stages (input rails, the query's embedding, keyword and hybrid search, prompt render).

Every sidecar resolves names in a SQLite file of this run's own (the harness gives each one a
copy of dapr-config/config.yaml naming it, harness.session_config): the machine-wide
`.data/nameresolution.db` holds every other run's apps too, and an app id found there twice is
load-balanced across both. Its pub/sub streams are in a Redis database of its own
(`BENCH_REDIS_DB`), so no other run's backlog is ahead of its document or keeps features busy.
The bench checks that its name file lists only its own sidecars, and exits 1, saying so under
the table, when any request failed: ratios over failed requests are not a measurement.

    uv run python bench/chat/run.py [--levels 1,4] [--requests 16] [--max-tokens 32]
        [--window-ms 40]   # a second gateway with time-batched guard checks (0: none)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil
import yaml

from gateway.chat import ChatPipeline, PipelineSettings
from gateway.settings import GatewaySettings
from gateway.timing import parse_server_timing
from genai_platform.dapr import Sidecar

ROOT = Path(__file__).resolve().parents[2]
# The test harness already starts daprd and apps on free loopback ports with tokens.
sys.path.insert(0, str(ROOT / "tests"))

from harness import (  # noqa: E402
    NAMES_FILE,
    PROFILES,
    RESILIENCY_DIR,
    AppWithSidecar,
    read_secrets,
    registered_sidecars,
    session_config,
    start_pair,
    wait_until,
)

APPS = ("guard", "prompts", "features", "inference", "gateway")
# The Redis database this bench's pub/sub streams live in: the platform's and every test's are in
# database 0, where a subscriber's consumer group may hold another run's backlog (features embeds
# it first, which delays the bench's document and loads the machine while it runs).
BENCH_REDIS_DB = "15"
DOCUMENT = (
    "Kestrel Launch Systems handbook. The launch code word for the Kestrel-7 mission is MARIGOLD-PELICAN. "
    "The Kestrel-7 rocket lifts off from pad 39C at dawn. Fuel loading starts six hours before launch and "
    "takes ninety minutes. The flight director is Amara Okafor. The payload is a weather satellite named "
    "Tern-2 that will map sea ice. Launches are scrubbed when ground winds exceed thirty knots."
)
QUESTIONS = [
    "What is the launch code word for the Kestrel-7 mission?",
    "Where does the Kestrel-7 rocket lift off from?",
    "When does fuel loading start?",
    "Who is the flight director?",
    "What is the payload of the mission?",
    "When is a launch scrubbed?",
    "How long does fuel loading take?",
    "What will the satellite map?",
]
# The gateway's stages in pipeline order, as its Server-Timing names them.
STAGES = ("guard-in", "retrieve", "prompt", "inference-first", "inference", "guard-out", "first-token", "total")


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str = "smollm2"
    # The messages sent for each question, when not the question alone (the grounded prompt).
    messages: dict[str, list[dict[str, str]]] = field(default_factory=dict)


@dataclass
class Sample:
    ttft_s: float
    total_s: float
    text_events: int  # events that carried text: one per token direct, one per released piece through guard
    words: int  # whitespace-separated words of the answer: the most pieces the guard's whole-word rule can release
    stages_ms: dict[str, float]
    text: str


@dataclass
class Level:
    target: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    total_p50_ms: float | None
    text_events_p50: float | None
    words_p50: float | None
    stages_p50_ms: dict[str, float] = field(default_factory=dict)
    stages_p95_ms: dict[str, float] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    answer_samples: list[str] = field(default_factory=list)  # what the answers looked like


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_request(client: httpx.AsyncClient, target: Target, question: str, max_tokens: int) -> Sample:
    body = {
        "model": target.model,
        "messages": target.messages.get(question) or [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first, events, text = None, 0, ""
    stages: dict[str, float] = {}
    async with client.stream("POST", target.url, json=body, headers=target.headers) as response:
        response.raise_for_status()
        stages = parse_server_timing(response.headers.get("server-timing", ""))
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"the stream ended with an error: {event['error'].get('message')}")
            if event.get("choices") and (event["choices"][0].get("delta") or {}).get("content"):
                first = first or time.perf_counter()
                events += 1
                text += event["choices"][0]["delta"]["content"]
            if event.get("server_timing"):
                stages = parse_server_timing(event["server_timing"])
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("no content arrived")
    return Sample(first - started, end - started, events, len(text.split()), stages, text)


async def run_wave(
    client: httpx.AsyncClient, target: Target, questions: list[str], max_tokens: int
) -> tuple[list[Sample], list[str]]:
    """One request per question, all sent at once: the samples, and what went wrong for the others."""
    results = await asyncio.gather(
        *(one_request(client, target, question, max_tokens) for question in questions), return_exceptions=True
    )
    samples = [result for result in results if isinstance(result, Sample)]
    failed = [result for result in results if not isinstance(result, Sample)]
    for error in failed:
        if not isinstance(error, httpx.HTTPError | RuntimeError | json.JSONDecodeError):
            raise error
    return samples, [f"{type(error).__name__}: {error}" for error in failed]


def summarise(target: str, concurrency: int, samples: list[Sample], errors: list[str], wall_s: float) -> Level:
    """A target's samples at one concurrency level as percentiles."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    def stage_percentile(q: float) -> dict[str, float]:
        names = {name for sample in samples for name in sample.stages_ms}
        return {
            name: round(percentile([s.stages_ms[name] for s in samples if name in s.stages_ms], q) or 0.0, 1)
            for name in sorted(names, key=lambda n: STAGES.index(n) if n in STAGES else len(STAGES))
        }

    return Level(
        target,
        concurrency,
        len(samples) + len(errors),
        len(errors),
        round(wall_s, 2),
        ms(percentile([s.ttft_s for s in samples], 0.5)),
        ms(percentile([s.ttft_s for s in samples], 0.95)),
        ms(percentile([s.total_s for s in samples], 0.5)),
        percentile([float(s.text_events) for s in samples], 0.5),
        percentile([float(s.words) for s in samples], 0.5),
        stage_percentile(0.5),
        stage_percentile(0.95),
        errors[:3],
        [sample.text for sample in samples[:2]],
    )


def cpu_seconds(stack: dict[str, AppWithSidecar]) -> dict[str, float]:
    """CPU seconds (user + system, children included) each app, its daprd and this client have used so far."""
    used: dict[str, float] = {"client": sum(psutil.Process().cpu_times()[:2])}
    for name, pair in stack.items():
        for label, process in ((name, pair.app.process), (f"{name}-daprd", pair.sidecar.process)):
            if process is None or process.popen is None:
                continue
            total = 0.0
            with contextlib.suppress(psutil.NoSuchProcess):
                leader = psutil.Process(process.popen.pid)
                for each in (leader, *leader.children(recursive=True)):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += sum(each.cpu_times()[:2])
            used[label] = total
    return used


async def run_level(
    targets: list[Target], concurrency: int, requests: int, max_tokens: int, stack: dict[str, AppWithSidecar]
) -> tuple[list[Level], dict[str, dict[str, float]]]:
    """Every target at one concurrency level, interleaved: wave after wave of `concurrency` requests
    sent at once, each wave to every target in turn (the order rotating), so a swing of the
    machine's load between waves hits every target alike. Also the CPU seconds per answer each
    process spent during each target's waves (`{target: {process: seconds}}`)."""
    waves = max(1, -(-requests // concurrency))
    samples: dict[str, list[Sample]] = {target.name: [] for target in targets}
    errors: dict[str, list[str]] = {target.name: [] for target in targets}
    walls = dict.fromkeys(samples, 0.0)
    cpu: dict[str, dict[str, float]] = {target.name: {} for target in targets}
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        for wave in range(waves):
            questions = [QUESTIONS[(wave * concurrency + i) % len(QUESTIONS)] for i in range(concurrency)]
            for target in targets[wave % len(targets) :] + targets[: wave % len(targets)]:
                before, started = cpu_seconds(stack), time.perf_counter()
                done, failed = await run_wave(client, target, questions, max_tokens)
                walls[target.name] += time.perf_counter() - started
                after = cpu_seconds(stack)
                for name, seconds in after.items():
                    spent = cpu[target.name].get(name, 0.0) + seconds - before.get(name, seconds)
                    cpu[target.name][name] = spent
                samples[target.name] += done
                errors[target.name] += failed
    answers = waves * concurrency
    per_answer = {
        name: {process: round(seconds / answers, 3) for process, seconds in used.items()} for name, used in cpu.items()
    }
    levels = [summarise(t.name, concurrency, samples[t.name], errors[t.name], walls[t.name]) for t in targets]
    return levels, per_answer


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def tables(levels: list[Level]) -> str:
    by = {(lv.target, lv.concurrency): lv for lv in levels}
    header = (
        f"{'target':<20}{'conc':>5}{'reqs':>6}{'err':>5}{'TTFT p50':>10}{'TTFT p95':>10}{'x direct':>10}"
        f"{'total p50':>11}{'text events':>13}{'words':>7}"
    )
    lines = [header, "-" * len(header)]
    for lv in levels:
        direct = by.get(("inference", lv.concurrency))
        ratio = (
            f"{lv.ttft_p50_ms / direct.ttft_p50_ms:.2f}" if direct and direct.ttft_p50_ms and lv.ttft_p50_ms else "-"
        )
        lines.append(
            f"{lv.target:<20}{lv.concurrency:>5}{lv.requests:>6}{lv.errors:>5}{fmt(lv.ttft_p50_ms):>10}"
            f"{fmt(lv.ttft_p95_ms):>10}{ratio:>10}{fmt(lv.total_p50_ms):>11}"
            f"{'-' if lv.text_events_p50 is None else f'{lv.text_events_p50:.0f}':>13}"
            f"{'-' if lv.words_p50 is None else f'{lv.words_p50:.0f}':>7}"
        )
    staged = [lv for lv in levels if lv.stages_p50_ms]
    if staged:
        lines += ["", "gateway stages, p50 (ms; from Server-Timing)"]
        header = f"{'target':<20}{'conc':>5}" + "".join(f"{name:>{len(name) + 2}}" for name in STAGES)
        lines += [header, "-" * len(header)]
        for lv in staged:
            cells = "".join(f"{fmt(lv.stages_p50_ms.get(name)):>{len(name) + 2}}" for name in STAGES)
            lines.append(f"{lv.target:<20}{lv.concurrency:>5}{cells}")
    for concurrency in sorted({lv.concurrency for lv in levels}):
        base = by.get(("inference", concurrency))
        for name in [lv.target for lv in levels if lv.concurrency == concurrency and lv.target != "inference"]:
            other = by.get((name, concurrency))
            if base and other and base.ttft_p50_ms and other.ttft_p50_ms:
                added = other.ttft_p50_ms - base.ttft_p50_ms
                lines.append(
                    f"{name} adds {added:+.0f} ms ({100 * added / base.ttft_p50_ms:+.0f}%) to TTFT p50 "
                    f"at concurrency {concurrency}"
                )
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def targets_table(levels: list[Level]) -> str:
    """Issue 12's targets, each met or missed and by how much."""
    by = {(lv.target, lv.concurrency): lv for lv in levels}
    lines = ["", "issue 12 targets", f"{'target':<66}{'measured':>16}{'met':>6}"]
    for concurrency in sorted({lv.concurrency for lv in levels}):
        direct, grounded, gateway, rag = (
            by.get((name, concurrency)) for name in ("inference", "inference-grounded", "gateway", "gateway-rag")
        )
        if not (direct and direct.ttft_p50_ms):
            continue
        if gateway and gateway.ttft_p50_ms:
            ratio = gateway.ttft_p50_ms / direct.ttft_p50_ms
            lines.append(
                f"{f'TTFT p50 gateway <= 1.3x direct (conc {concurrency})':<66}{ratio:>15.2f}x{_met(ratio <= 1.3)}"
            )
        # The RAG target both ways: against the question sent alone (the wording: this
        # includes the model's prefill of the longer grounded prompt) and against the same
        # grounded messages sent directly (what the gateway's retrieval and render add).
        for base in (direct, grounded):
            if rag and rag.ttft_p50_ms and base and base.ttft_p50_ms:
                added = rag.ttft_p50_ms - base.ttft_p50_ms
                name = f"TTFT p50 gateway-rag <= {base.target} + 100 ms (conc {concurrency})"
                lines.append(f"{name:<66}{added:>+14.0f}ms{_met(added <= 100)}")
        # Text events against the direct stream of the same answer (one event per token that
        # carried text): the plain question for the gateway, the grounded messages for RAG.
        for other, base in ((gateway, direct), (rag, grounded or direct)):
            if other and other.text_events_p50 and base and base.text_events_p50:
                gap = other.text_events_p50 / base.text_events_p50 - 1
                name = f"text events {other.target} within 20% of {base.target} (conc {concurrency})"
                lines.append(f"{name:<66}{100 * gap:>+15.0f}%{_met(abs(gap) <= 0.2)}")
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def _met(ok: bool) -> str:
    return f"{'yes' if ok else 'NO':>6}"


def failures(levels: list[Level]) -> str:
    """A loud line for every target and level with failed requests ('' when none failed)."""
    failed = [lv for lv in levels if lv.errors]
    if not failed:
        return ""
    lines = ["", "FAILED: requests failed, so the ratios above are not a measurement (the bench exits 1)"]
    lines += [
        f"  {lv.target} at concurrency {lv.concurrency}: {lv.errors} of {lv.requests} failed: {lv.error_samples}"
        for lv in failed
    ]
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def own_components(folder: Path) -> list[Path]:
    """The default profile's components with pub/sub in `BENCH_REDIS_DB`, and the resiliency policies."""
    components = folder / "components"
    components.mkdir()
    for source in PROFILES["default"].glob("*.yaml"):
        resource = yaml.safe_load(source.read_text())
        if resource.get("kind") == "Component" and resource["spec"]["type"] == "pubsub.redis":
            resource["spec"]["metadata"].append({"name": "redisDB", "value": BENCH_REDIS_DB})
        (components / source.name).write_text(yaml.safe_dump(resource))
    return [components, RESILIENCY_DIR]


def check_name_resolution(stack: dict[str, AppWithSidecar]) -> None:
    """Raise unless this run's name-resolution file lists exactly this run's sidecars."""
    registered = registered_sidecars(session_config().parent / NAMES_FILE)
    ours = {(pair.sidecar.app_id, f"127.0.0.1:{pair.sidecar.internal_grpc_port}") for pair in stack.values()}
    if registered != ours:
        raise RuntimeError(f"name resolution lists {sorted(registered - ours)} and lacks {sorted(ours - registered)}")


def timed(call: Callable[[], httpx.Response], samples: int) -> dict[str, float]:
    """p50/p95 ms of `call` after three warm-up calls."""
    times = []
    for i in range(samples + 3):
        started = time.perf_counter()
        call().raise_for_status()
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(times, 0.5) or 0, 2), "p95_ms": round(percentile(times, 0.95) or 0, 2)}


def rag_steps(stack: dict[str, AppWithSidecar], secrets: dict[str, str], collection: str, samples: int = 20) -> dict:
    """The RAG path's calls one at a time from the gateway's sidecar, as the pipeline makes them:
    input rails, the query's embedding alone, keyword search (no embedding), hybrid search (the
    gateway's: embedding + vector + BM25) and the grounding prompt's render. p50/p95 ms each."""
    question = QUESTIONS[0]
    base = "/v1.0/invoke/{}/method/v1/{}"
    with stack["gateway"].sidecar.client() as dapr:

        def post(app: str, method: str, body: dict) -> Callable[[], httpx.Response]:
            return lambda: dapr.post(base.format(app, method), json=body)

        search = {"query": question, "k": 4, "collection": collection, "collection_must_exist": True}
        calls = {
            "guard input": post("guard", "guard/input", {"messages": [{"role": "user", "content": question}]}),
            "embedding": post("features", "embeddings", {"input": [question]}),
            "search keyword": post("features", "search", {**search, "mode": "keyword"}),
            "search hybrid": post("features", "search", {**search, "mode": "hybrid"}),
            "prompt render": post(
                "prompts", "prompts/rag-answer/render", {"variables": {"question": question, "context": DOCUMENT}}
            ),
        }
        return {name: timed(call, samples) for name, call in calls.items()}


async def grounded_messages(gateway: AppWithSidecar, secrets: dict[str, str], collection: str) -> dict:
    """Each question's messages as the gateway sends them to inference for `rag/<collection>`:
    the gateway's own ChatPipeline.plan (input rails, retrieval, render) through its sidecar."""
    settings = GatewaySettings(
        APP_PORT=gateway.app.port, DAPR_HTTP_PORT=gateway.sidecar.http_port, DAPR_API_TOKEN=secrets["dapr-api-token"]
    )
    sidecar = Sidecar(settings)
    pipeline = ChatPipeline(sidecar, PipelineSettings(settings.rag_prompt, settings.retrieval_k, 30.0, 300.0))
    try:
        messages = {}
        for question in QUESTIONS:
            body = {"model": f"rag/{collection}", "messages": [{"role": "user", "content": question}]}
            messages[question] = (await pipeline.plan(body, f"bench-{uuid.uuid4().hex[:8]}")).request["messages"]
        return messages
    finally:
        await sidecar.aclose()


def guard_round_trip(stack: dict[str, AppWithSidecar], secrets: dict[str, str], samples: int = 50) -> dict:
    """One guard stream step (a token's worth of text, alone in a batch, as the gateway sends it at
    concurrency 1) from the gateway's sidecar to the guard: p50/p95 ms, and the CPU ms one step
    costs the two sidecars and the guard together."""
    sidecar = stack["gateway"].sidecar
    url = f"{sidecar.url}/v1.0/invoke/guard/method/v1/guard/output/stream/batch"
    headers = {"dapr-api-token": secrets["dapr-api-token"]}
    times = []
    with httpx.Client(timeout=30) as client:
        for i in range(samples + 5):
            if i == 5:  # the first calls warm the connections
                before = cpu_seconds(stack)
            started = time.perf_counter()
            step = {"pending": "The launch", "chunk": " is"}
            client.post(url, json={"steps": [step]}, headers=headers).raise_for_status()
            if i >= 5:
                times.append((time.perf_counter() - started) * 1000)
    after = cpu_seconds(stack)
    spent = sum(after[name] - before[name] for name in ("gateway-daprd", "guard-daprd", "guard"))
    return {
        "p50_ms": round(percentile(times, 0.5) or 0, 2),
        "p95_ms": round(percentile(times, 0.95) or 0, 2),
        "cpu_ms": round(1000 * spent / samples, 2),
    }


def ingest(stack: dict[str, AppWithSidecar]) -> str:
    """One handbook in a fresh collection, indexed before the benchmark starts."""
    collection = f"bench-{uuid.uuid4().hex[:8]}"
    with stack["ingestion"].sidecar.client() as dapr:
        created = dapr.post(
            "/v1.0/invoke/ingestion/method/v1/documents",
            json={"text": f"{DOCUMENT} (Edition {collection}.)", "title": "Kestrel handbook", "collection": collection},
            timeout=60,
        )
        created.raise_for_status()
        document_id = created.json()["id"]

    # Searched as the gateway searches: only the gateway may call features' search (its access policy).
    with stack["gateway"].sidecar.client() as gateway:

        def indexed() -> bool:
            found = gateway.post(
                "/v1.0/invoke/features/method/v1/search",
                json={"query": "MARIGOLD-PELICAN", "collection": collection, "mode": "keyword"},
            )
            found.raise_for_status()
            return any(hit["document_id"] == document_id for hit in found.json()["results"])

        wait_until(indexed, what="the handbook indexed", timeout=120)
    return collection


async def bench(
    targets: list[Target], levels: list[int], requests: int, max_tokens: int, stack: dict[str, AppWithSidecar]
) -> tuple[list[Level], dict[int, dict[str, dict[str, float]]]]:
    results, cpu = [], {}
    for target in targets:
        # One warm-up request per target: first-call costs are not what this measures.
        warm_up, _ = await run_level([target], 1, 1, 4, stack)
        if warm_up[0].errors:
            raise RuntimeError(f"the warm-up request to {target.name} failed: {warm_up[0].error_samples}")
    for concurrency in levels:
        measured, cpu[concurrency] = await run_level(targets, concurrency, requests, max_tokens, stack)
        for level in measured:
            sys.stdout.write(f"{level}\n")
        sys.stdout.flush()
        results += measured
    return results, cpu


def cpu_table(cpu: dict[int, dict[str, dict[str, float]]]) -> str:
    """CPU milliseconds per answer by process (app and its daprd), per target and level: where a
    target's work beyond inference's own goes on a machine whose cores inference also needs."""
    groups = ("inference", "gateway", "guard", "features", "prompts", "client")
    lines = ["", "CPU ms per answer, by app (app + its daprd; daprd's share in brackets)"]
    header = f"{'target':<20}{'conc':>5}" + "".join(f"{name:>16}" for name in groups)
    lines += [header, "-" * len(header)]
    for concurrency, targets in cpu.items():
        for target, used in targets.items():
            cells = ""
            for name in groups:
                app, daprd = used.get(name, 0.0) * 1000, used.get(f"{name}-daprd", 0.0) * 1000
                cells += f"{f'{app + daprd:.0f} ({daprd:.0f})':>16}"
            lines.append(f"{target:<20}{concurrency:>5}{cells}")
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--requests", type=int, default=16, help="requests per target and level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--window-ms",
        type=float,
        default=40.0,
        help="also run a second gateway with this guard time-batching window (GATEWAY_GUARD_STREAM_WINDOW_MS; 0: none)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="inference's torch threads (INFERENCE_TORCH_THREADS; 0: one per core). One by default: every "
        "target shares the one inference, and on shared cores two threads spin-wait for each other",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logs = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    secrets = read_secrets()
    # This run's own broker database (its name resolution is its own too: harness.session_config):
    # other runs on the machine can neither answer its calls nor hold up its events.
    own = {"resources": own_components(logs)}
    stack: dict[str, AppWithSidecar] = {}
    try:
        stack["ingestion"] = start_pair("ingestion", logs, secrets, **own)
        for app_id in APPS:
            env = {"INFERENCE_TORCH_THREADS": str(args.torch_threads)} if app_id == "inference" else None
            stack[app_id] = start_pair(app_id, logs, secrets, timeout=300, env=env, **own)
        if args.window_ms:
            # The same gateway with time batching, beside the default one (nothing invokes the
            # gateway through Dapr, so two instances of its app id do not meet).
            window = {"GATEWAY_GUARD_STREAM_WINDOW_MS": str(args.window_ms)}
            stack["gateway-window"] = start_pair("gateway", logs, secrets, timeout=300, env=window, **own)
        check_name_resolution(stack)
        collection = ingest(stack)
        round_trip = guard_round_trip(stack, secrets)
        steps = rag_steps(stack, secrets, collection)
        grounded = asyncio.run(grounded_messages(stack["gateway"], secrets, collection))
        load_before = os.getloadavg()
        inference, gateway = stack["inference"], stack["gateway"]
        key = {"Authorization": f"Bearer {secrets['gateway-api-keys'].split(',')[0]}"}
        app_token = {"dapr-api-token": secrets["app-api-token"]}
        targets = [
            Target("inference", f"{inference.app.url}/v1/chat/completions", app_token),
            Target("inference-grounded", f"{inference.app.url}/v1/chat/completions", app_token, messages=grounded),
            Target(
                "inference-dapr",
                f"{inference.sidecar.url}/v1.0/invoke/inference/method/v1/chat/completions",
                {"dapr-api-token": secrets["dapr-api-token"]},
            ),
            Target("gateway", f"{gateway.app.url}/v1/chat/completions", key),
            Target("gateway-rag", f"{gateway.app.url}/v1/chat/completions", key, model=f"rag/{collection}"),
        ]
        if args.window_ms:
            url = f"{stack['gateway-window'].app.url}/v1/chat/completions"
            targets.append(Target(f"gateway-{args.window_ms:g}ms", url, key))
        results, cpu = asyncio.run(bench(targets, levels, args.requests, args.max_tokens, stack))
        load_after = os.getloadavg()
    finally:
        for pair in reversed(stack.values()):
            pair.stop()

    table = tables(results) + targets_table(results) + cpu_table(cpu)
    step_lines = ", ".join(f"{name} {t['p50_ms']:.0f}" for name, t in steps.items())
    context = (
        f"\nRAG path one call at a time from the gateway's sidecar, p50 ms: {step_lines}"
        f"\nguard stream step through Dapr (a token's text): p50 {round_trip['p50_ms']} ms, "
        f"p95 {round_trip['p95_ms']} ms, {round_trip['cpu_ms']} ms of CPU (both sidecars and the guard)"
        + (
            f"; gateway-{args.window_ms:g}ms: the gateway with a {args.window_ms:g} ms guard window (time batching)"
            if args.window_ms
            else ""
        )
        + "\n"
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs"
    )
    sys.stdout.write(context + "\n")
    table += "\n" + context + failures(results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"chat-{time.strftime('%Y%m%dT%H%M%S')}.json"
    meta = {
        "max_tokens": args.max_tokens,
        "levels": levels,
        "requests": args.requests,
        "cpus": os.cpu_count(),
        "window_ms": args.window_ms,
        "torch_threads": args.torch_threads,
        "guard_step_round_trip": round_trip,
        "rag_steps": steps,
        "cpu_s_per_answer": cpu,
        "load_average_1m": [load_before[0], load_after[0]],
        "logs": str(logs),
    }
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results], "table": table}, indent=2))
    sys.stdout.write(f"written: {path.relative_to(ROOT)}\n")
    if any(level.errors for level in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
