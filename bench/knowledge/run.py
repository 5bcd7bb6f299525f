"""Knowledge benchmark: embedding throughput by batch size, and ingest-to-searchable end to end.

Embeddings, each target given the same texts (chunk-sized, 40-160 words) in requests of 1, 16
and 64 inputs, one request at a time:
  (a) inproc        - sentence-transformers in this process: the model the features service
                      loads (all-MiniLM-L6-v2), with the service's settings (its dtype included)
  (a') inproc-float32 - the same in float32: what FEATURES_DTYPE=auto's bfloat16 (on CPUs with
                      AVX-512 BF16 or AMX) is measured against
  (b) service       - the features app on its port: POST /v1/embeddings (app token), floats
  (c) service-b64   - the same with `encoding_format: "base64"`
  (d) dapr          - through the features daprd: /v1.0/invoke/features/method/v1/embeddings
  (e) dapr-b64      - the same with base64
  (f) openai-sdk    - the OpenAI Python client through daprd (it asks for base64 by default)
Every target's time includes turning the answer into a float32 matrix, since (a) hands one over.
Tokens/s counts the model's tokens (after its truncation), the same count for every target.
The targets take turns (a round of each, `--rounds` times), so load from other work on a shared
machine falls on all of them alike.

Then ingest-to-searchable: ingestion and features beside their sidecars and Redis; N documents
posted through ingestion's daprd (4 at a time), timed until every one is in the features index
(what search reads).

Prints one table with ratios against (a) and writes JSON to bench/results/.

    uv run python bench/knowledge/run.py [--batches 1,16,64] [--texts 512] [--rounds 4] [--documents 100]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# The test harness already starts daprd and apps on free loopback ports with tokens.
sys.path.insert(0, str(ROOT / "tests"))

from harness import INGESTION_DAPRD_ARGS, AppWithSidecar, read_secrets, start_pair, wait_until  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
SENTENCES = [
    "The harbour pilots guide container ships through the narrow channel at high tide.",
    "Basalt lava flows cool slowly and form hexagonal columns along the coast.",
    "Steep green tea at eighty degrees for two minutes to keep it from turning bitter.",
    "Comets have icy nuclei that sublimate into long tails as they approach the sun.",
    "The quarterly report shows revenue growth in every region except the northern one.",
    "Glaciers carve U-shaped valleys and leave moraines where they stop advancing.",
    "Rayleigh scattering makes the sky look blue because short wavelengths scatter more.",
    "A circuit breaker opens after repeated failures so that callers fail fast for a while.",
    "Bees communicate the direction of flowers with a waggle dance inside the hive.",
    "The committee postponed the vote until the environmental assessment is published.",
    "Fermentation turns the sugars in grape juice into alcohol and carbon dioxide.",
    "Retry with exponential backoff, and cap the interval so a recovery is noticed soon.",
    "The museum's new wing displays textiles from the twelfth to the fifteenth century.",
    "Tidal ranges are largest at new and full moon, when the sun and moon line up.",
    "Index the chunks with their embeddings and keep a keyword index beside the vectors.",
    "The train to the mountain village leaves twice a day and takes about three hours.",
]


def texts(count: int, seed: int = 7) -> list[str]:
    """Chunk-like texts of 40-160 words (the ingestion service cuts chunks of up to 200 tokens)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        words: list[str] = []
        target = rng.randint(40, 160)
        while len(words) < target:
            words += rng.choice(SENTENCES).split()
        out.append(f"{n}: " + " ".join(words[:target]))
    return out


@dataclass
class Level:
    target: str
    batch: int
    requests: int
    texts: int
    tokens: int
    wall_s: float
    embeddings_per_s: float
    tokens_per_s: float
    request_p50_ms: float


@dataclass
class Ingest:
    documents: int
    chunks: int
    posted_s: float
    searchable_s: float
    documents_per_s: float
    chunks_per_s: float
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Samples:
    """One target at one batch size: what its requests took, summed over the rounds."""

    def __init__(self, name: str, batch: int) -> None:
        self.name, self.batch = name, batch
        self.durations: list[float] = []
        self.texts = self.tokens = 0

    def level(self) -> Level:
        wall = sum(self.durations)
        return Level(
            self.name, self.batch, len(self.durations), self.texts, self.tokens, round(wall, 3),
            round(self.texts / wall, 1), round(self.tokens / wall, 1), round(1000 * percentile(self.durations, 0.5), 1),
        )  # fmt: skip


def run_round(embed, samples: Samples, corpus: list[str], tokens: list[int], texts: int, offset: int) -> None:
    """Embed `texts` texts in requests of `samples.batch`, one request at a time."""
    batch = samples.batch
    for r in range(max(1, math.ceil(texts / batch))):
        start = (offset + r * batch) % len(corpus)
        rows = [(start + i) % len(corpus) for i in range(batch)]
        inputs = [corpus[i] for i in rows]
        begun = time.perf_counter()
        matrix = embed(inputs)
        samples.durations.append(time.perf_counter() - begun)
        if matrix.shape != (batch, 384):
            raise RuntimeError(f"{samples.name}: got a {matrix.shape} matrix for {batch} inputs")
        samples.texts += batch
        samples.tokens += sum(tokens[i] for i in rows)


def measure(targets: dict, corpus: list[str], tokens: list[int], batches: list[int], texts: int, rounds: int):
    """Every target at every batch size, interleaved: round by round, target after target.

    The machine is shared: interleaving spreads whatever else runs over every target alike,
    where measuring one target after another would charge it to whichever ran at the time.
    """
    levels = []
    for batch in batches:
        samples = {name: Samples(name, batch) for name in targets}
        for embed in targets.values():
            embed(corpus[:batch])  # warm-up: first-call costs are not what this measures
        for round_number in range(rounds):
            for name, embed in targets.items():
                run_round(embed, samples[name], corpus, tokens, texts // rounds, round_number * texts // rounds)
        for name in targets:
            levels.append(samples[name].level())
            sys.stdout.write(f"{levels[-1]}\n")
            sys.stdout.flush()
    return levels


def in_process(dtype: str | None = None):
    """The features service's model and encode settings, in this process (in `dtype`, when given,
    instead of the service's); and its token counter."""
    import torch  # noqa: PLC0415 (torch: only when run)
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    from features.embedding import default_batch_size, default_threads  # noqa: PLC0415
    from features.settings import FeaturesSettings  # noqa: PLC0415
    from genai_platform.accelerators import Dtype, resolved_dtype  # noqa: PLC0415

    settings = FeaturesSettings.model_validate({})
    model = SentenceTransformer(settings.resolved_model(), local_files_only=True)
    model.to(getattr(torch, resolved_dtype(Dtype(dtype or settings.dtype), model.device.type)))
    # The service's torch threads too (one on a CPU): two spin-waiting threads beside the service's
    # on 2 cores made this target 2-4x slower than the service it is the baseline of.
    if threads := default_threads(model.device.type):
        torch.set_num_threads(threads)
    batch_size = settings.batch_size or default_batch_size(model.device.type)

    def embed(inputs: list[str]) -> np.ndarray:
        return model.encode(
            inputs,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    def count(corpus: list[str]) -> list[int]:
        encoded = model.tokenizer(corpus, truncation=True, max_length=model.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]

    return embed, count


def over_http(name: str, url: str, headers: dict[str, str], encoding: str):
    client = httpx.Client(headers=headers, timeout=300)

    def embed(inputs: list[str]) -> np.ndarray:
        body = {"model": MODEL, "input": inputs}
        if encoding == "base64":
            body["encoding_format"] = "base64"
        response = client.post(url, json=body)
        response.raise_for_status()
        data = response.json()["data"]
        if encoding == "base64":
            return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in data])
        return np.asarray([item["embedding"] for item in data], dtype=np.float32)

    return name, embed, client


def openai_sdk(sidecar_url: str, token: str):
    import openai  # noqa: PLC0415

    client = openai.OpenAI(
        base_url=f"{sidecar_url}/v1.0/invoke/features/method/v1",
        api_key="unused",  # daprd checks dapr-api-token
        default_headers={"dapr-api-token": token},
        max_retries=0,
        timeout=300,
    )

    def embed(inputs: list[str]) -> np.ndarray:
        result = client.embeddings.create(model=MODEL, input=inputs)
        return np.asarray([item.embedding for item in result.data], dtype=np.float32)

    return "openai-sdk", embed, client


def ingest_to_searchable(stack: dict[str, AppWithSidecar], documents: int) -> Ingest:
    """Post `documents` fresh documents through ingestion's daprd; time until all are indexed."""
    ingestion, features = stack["ingestion"], stack["features"]
    collection = f"bench-{uuid.uuid4().hex[:8]}"
    rng = random.Random(11)
    bodies = []
    for n in range(documents):
        # About 350 words: two chunks of up to 200 tokens each.
        paragraphs = [" ".join(rng.choice(SENTENCES) for _ in range(6)) for _ in range(4)]
        text = f"Bench document {n} of {collection}.\n\n" + "\n\n".join(paragraphs)
        bodies.append({"text": text, "title": f"Bench {n}", "collection": collection})
    ids: list[str] = []
    errors: list[str] = []
    invoke = f"{ingestion.sidecar.url}/v1.0/invoke/ingestion/method/v1/documents"
    dapr_token = {"dapr-api-token": ingestion.sidecar.dapr_api_token or ""}
    app_token = {"dapr-api-token": features.sidecar.app_api_token or ""}

    with httpx.Client(headers=dapr_token, timeout=120) as http, ThreadPoolExecutor(4) as pool:

        def post(body: dict) -> str:
            response = http.post(invoke, json=body)
            response.raise_for_status()
            return response.json()["id"]

        started = time.perf_counter()
        ids = list(pool.map(post, bodies))
        posted = time.perf_counter() - started

        pending = set(ids)
        chunks = 0
        with httpx.Client(base_url=features.app.url, headers=app_token, timeout=30) as index:

            def all_indexed() -> bool:
                nonlocal chunks
                for doc_id in list(pending):
                    found = index.get(f"/v1/index/documents/{doc_id}").json()["chunk_ids"]
                    if found:
                        pending.discard(doc_id)
                        chunks += len(found)
                return not pending

            wait_until(
                all_indexed,
                what="every document indexed",
                timeout=900,
                interval=0.2,
                watch=[*ingestion.processes, *features.processes],
            )
            searchable = time.perf_counter() - started
            hits = index.post("/v1/search", json={"query": "Bench document 0", "collection": collection, "k": 3})
            if not any(hit["document_id"] == ids[0] for hit in hits.json()["results"]):
                errors.append("the first document was indexed but not found by search")
        list(pool.map(lambda doc_id: http.delete(f"{invoke}/{doc_id}"), ids))  # leave Redis as found

    result = Ingest(
        documents, chunks, round(posted, 2), round(searchable, 2),
        round(documents / searchable, 2), round(chunks / searchable, 2), errors,
    )  # fmt: skip
    sys.stdout.write(f"{result}\n")
    return result


def print_table(levels: list[Level], ingest: Ingest | None) -> str:
    base = {lv.batch: lv for lv in levels if lv.target == "inproc"}
    header = f"{'target':<12}{'batch':>6}{'texts':>7}{'emb/s':>9}{'tok/s':>10}{'req p50':>10}{'x inproc':>10}"
    lines = [header, "-" * len(header)]
    for lv in levels:
        ref = base.get(lv.batch)
        ratio = f"{lv.embeddings_per_s / ref.embeddings_per_s:.2f}" if ref else "-"
        lines.append(
            f"{lv.target:<12}{lv.batch:>6}{lv.texts:>7}{lv.embeddings_per_s:>9.1f}{lv.tokens_per_s:>10.0f}"
            f"{lv.request_p50_ms:>8.0f}ms{ratio:>10}"
        )
    if ingest is not None:
        lines.append(
            f"ingest-to-searchable: {ingest.documents} documents ({ingest.chunks} chunks) posted in "
            f"{ingest.posted_s:.1f} s, all searchable after {ingest.searchable_s:.1f} s: "
            f"{ingest.documents_per_s:.2f} documents/s, {ingest.chunks_per_s:.2f} chunks/s"
        )
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--texts", type=int, default=512, help="texts embedded per target and batch size")
    parser.add_argument("--rounds", type=int, default=4, help="the texts are sent in this many interleaved rounds")
    parser.add_argument("--documents", type=int, default=100, help="documents for ingest-to-searchable; 0 skips it")
    parser.add_argument("--only", default="inproc,inproc-float32,service,service-b64,dapr,dapr-b64,openai-sdk")
    args = parser.parse_args()
    batches = [int(x) for x in args.batches.split(",")]
    only = args.only.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logs = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    secrets = read_secrets()
    corpus = texts(max(256, max(batches)))
    inproc, count_tokens = in_process()
    tokens = count_tokens(corpus)

    stack: dict[str, AppWithSidecar] = {}
    clients: list = []
    ingest = None
    try:
        stack["features"] = start_pair("features", logs, secrets, timeout=300)
        features = stack["features"]
        app_url = f"{features.app.url}/v1/embeddings"
        dapr_url = f"{features.sidecar.url}/v1.0/invoke/features/method/v1/embeddings"
        app_token = {"dapr-api-token": secrets["app-api-token"]}
        dapr_token = {"dapr-api-token": secrets["dapr-api-token"]}
        available = {"inproc": inproc}
        if "inproc-float32" in only:
            available["inproc-float32"] = in_process("float32")[0]
        for name, embed, client in (
            over_http("service", app_url, app_token, "float"),
            over_http("service-b64", app_url, app_token, "base64"),
            over_http("dapr", dapr_url, dapr_token, "float"),
            over_http("dapr-b64", dapr_url, dapr_token, "base64"),
            openai_sdk(features.sidecar.url, secrets["dapr-api-token"]),
        ):
            available[name] = embed
            clients.append(client)
        targets = {name: available[name] for name in only}
        levels = measure(targets, corpus, tokens, batches, args.texts, args.rounds)
        if args.documents:
            stack["ingestion"] = start_pair("ingestion", logs, secrets, extra_args=INGESTION_DAPRD_ARGS)
            ingest = ingest_to_searchable(stack, args.documents)
    finally:
        for client in clients:
            client.close()
        for pair in reversed(stack.values()):
            pair.stop()

    table = print_table(levels, ingest)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"knowledge-{time.strftime('%Y%m%dT%H%M%S')}.json"
    meta = {"batches": batches, "texts": args.texts, "rounds": args.rounds, "cpus": os.cpu_count(), "logs": str(logs)}
    result = {
        "meta": meta,
        "embeddings": [asdict(lv) for lv in levels],
        "ingest": asdict(ingest) if ingest else None,
        "table": table,
    }
    path.write_text(json.dumps(result, indent=2))
    sys.stdout.write(f"written: {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
