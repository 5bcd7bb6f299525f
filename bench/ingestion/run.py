"""Ingestion benchmark: how fast a document's bytes become chunks, by document size.

Each document is plain text of varied sentences (a fixed seed), sizes in MB (10^6 bytes); each
step is ingestion's own code, as `Ingestor.ingest_bytes` runs it before any state write:
  check    - the bytes are text (ingestion.extract.check_content: puremagic and the UTF-8 check)
  extract  - decoding (ingestion.extract.extract)
  clean    - NFKC, control characters out, whitespace folded (ingestion.clean.clean_text)
  chunk    - tokenize once and pack chunks of 200 tokens (ingestion.chunking, the embedding
             model's tokenizer.json)
Prints one table: seconds per step, total, and MB/s; `--rounds` takes the best of N.

    uv run python bench/ingestion/run.py [--sizes 1,5,9] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from ingestion.chunking import Chunker, ChunkingPolicy, TokenCounter
from ingestion.clean import clean_text
from ingestion.extract import Format, check_content, extract
from ingestion.settings import bundled_tokenizer

# Prose-like words (str.split of one literal reads better than a 38-line list here).
WORDS = (  # noqa: SIM905
    "the moon pulls the sea and tides follow it twice a day while harbours fill and empty again under a "
    "pale sky sailors read tables of high and low water before they leave port estuaries funnel the flood"
).split()


def document(megabytes: float, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < megabytes * 1_000_000:
        sentences = (" ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + "." for _ in range(6))
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs).encode()[: int(megabytes * 1_000_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,9", help="document sizes in MB, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tokens = TokenCounter(bundled_tokenizer())
    chunker = Chunker(tokens.offsets, ChunkingPolicy())
    rows = []
    for megabytes in (float(size) for size in args.sizes.split(",")):
        data = document(megabytes)
        best: list[float] | None = None
        for _ in range(args.rounds):
            times = [time.perf_counter()]
            check_content(data, Format.TEXT)
            times.append(time.perf_counter())
            text = extract(data, Format.TEXT).text
            times.append(time.perf_counter())
            cleaned = clean_text(text)
            times.append(time.perf_counter())
            chunks = chunker.chunks(cleaned)
            times.append(time.perf_counter())
            steps = [b - a for a, b in zip(times, times[1:], strict=False)]
            best = steps if best is None or sum(steps) < sum(best) else best
        assert best is not None
        rows.append((megabytes, len(chunks), *best, sum(best), len(data) / 1e6 / sum(best)))
    out = sys.stdout
    header = ("MB", "chunks", "check s", "extract s", "clean s", "chunk s", "total s", "MB/s")
    out.write(" ".join(f"{name:>{width}}" for name, width in zip(header, (5, 7, 8, 9, 8, 8, 8, 6), strict=True)) + "\n")
    for megabytes, count, check, extracted, cleaned, chunked, total, rate in rows:
        out.write(
            f"{megabytes:>5.1f} {count:>7} {check:>8.2f} {extracted:>9.2f} {cleaned:>8.2f} {chunked:>8.2f} "
            f"{total:>8.2f} {rate:>6.2f}\n"
        )


if __name__ == "__main__":
    main()
