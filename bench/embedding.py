"""Embedding benchmark: how the int8 model is built, measured side by side in one run.

Compares on real chunks of the generated course book, 2 intra-op threads:

- fp32 sentence-transformers (the reference for cosine, and a speed baseline);
- int8 ONNX Runtime exported with torch's SDPA attention (how the project first built it);
- int8 ONNX Runtime exported with plain ("eager") attention (what ``processing.embedding`` builds now);

each int8 model at several batch sizes. Runs are interleaved round by round, so a noisy
neighbour slows every variant alike; best and median of the rounds are printed. Never asserts.

``python bench/embedding.py [--chunks 192] [--rounds 3] [--batch-sizes 1,4,8,16]``
Writes ``.lakehouse/bench/embedding.json``.

``embedding_floor`` (used by ``bench/ingest.py``) is one precision's time to encode a document's
chunks in one process with every core's thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import STATE, EmbeddingSettings, Settings
from processing import samples


def chunk_texts(count: int, settings: Settings) -> list[str]:
    from processing.chunking import chunk_pages
    from processing.pdf import extract_pages

    book = samples.course_book(max(10, count // 3 + 5))
    chunks = chunk_pages(
        extract_pages(book.pdf, 0, book.pages),
        document_id="bench",
        version=1,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )
    return [c.text for c in chunks][:count]


def embedding_floor(texts: list[str], settings: Settings, *, precision: str, threads: int | None = None) -> dict:
    """Seconds for one process to encode ``texts`` at ``precision`` with ``threads`` (all cores by
    default) intra-op threads, the model loaded and warmed up beforehand."""
    import os

    from processing.embedding import Embedder

    threads = threads or os.cpu_count() or 1
    embedder = Embedder(embedding_settings_for(settings, precision=precision, threads=threads))
    embedder.encode(texts[:8])
    started = time.perf_counter()
    embedder.encode(texts)
    seconds = time.perf_counter() - started
    return {"precision": embedder.precision, "threads": threads, "chunks": len(texts), "seconds": seconds,
            "chunks_per_s": len(texts) / seconds}  # fmt: skip


def embedding_settings_for(settings: Settings, **changes: object) -> EmbeddingSettings:
    return EmbeddingSettings(**{**settings.embedding.model_dump(), **changes})


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from processing.embedding import Embedder, export_onnx_int8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    args = parser.parse_args(argv)
    settings = Settings()
    texts = chunk_texts(args.chunks, settings)
    print(f"{len(texts)} chunks of ~{sum(map(len, texts)) // len(texts)} chars, {settings.embedding.threads} threads")

    def embedding_settings(**changes: object) -> EmbeddingSettings:
        return EmbeddingSettings(**{**settings.embedding.model_dump(), **changes})

    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        models = {
            attention: export_onnx_int8(embedding_settings(), Path(work) / f"{attention}.onnx", attention=attention)
            for attention in ("sdpa", "eager")
        }
        print(f"exported both int8 models in {time.perf_counter() - started:.1f} s")
        variants: dict[str, Embedder] = {"fp32 sentence-transformers": Embedder(embedding_settings(precision="fp32"))}
        for size in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
            for attention, path in models.items():
                label = f"int8 {attention} export, batch {size}"
                variants[label] = Embedder(embedding_settings(precision="int8", batch_size=size), onnx_model=path)
        reference = variants["fp32 sentence-transformers"].encode(texts)
        rates: dict[str, list[float]] = {label: [] for label in variants}
        cosine: dict[str, float] = {}
        for embedder in variants.values():
            embedder.encode(texts[:8])  # warm-up: first-call allocations
        for round_number in range(args.rounds):
            for label, embedder in variants.items():
                started = time.perf_counter()
                vectors = embedder.encode(texts)
                rates[label].append(len(texts) / (time.perf_counter() - started))
                cosine[label] = float(np.mean(np.sum(vectors * reference, axis=1)))
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)

    baseline = statistics.median(rates["int8 sdpa export, batch 16"]) if "int8 sdpa export, batch 16" in rates else None
    print(f"\n{'variant':<32}{'best':>8}{'median':>9}{'cosine':>9}{'vs sdpa/16':>12}")
    results = []
    for label, values in rates.items():
        median = statistics.median(values)
        ratio = f"{median / baseline:.2f}x" if baseline else "-"
        print(f"{label:<32}{max(values):>8.1f}{median:>9.1f}{cosine[label]:>9.4f}{ratio:>12}")
        results.append({"variant": label, "chunks_per_s": values, "median": median, "cosine": cosine[label]})
    out = STATE / "bench" / "embedding.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"chunks": len(texts), "rounds": args.rounds, "results": results}, indent=2))
    print(f"\nchunks/s (higher is better); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
