"""Reprocess benchmark: the time to reprocess a 500-page document beside its first ingestion, in
one run on this machine (CPU model and flags printed).

1. first ingestion (the baseline): the streaming job running, the generated book uploaded,
   seconds until it is searchable and until it is indexed (``bench/ingest.py``'s pipeline run);
2. ``lake.reprocess.reprocess`` of the same lake (``--all``: the book and the stream's warm-up
   page) into a new index version with the live settings, then with ``--chunk-size``: seconds
   from start to the switch, split into building (read, extract, chunk, embed, staged writes),
   indexing, checks and switch from the progress steps' times.

Never asserts times. ``python bench/reprocess.py [--pages 500] [--chunk-size 300]
[--placement executors|driver]``. Writes ``.lakehouse/bench/reprocess.json`` and ``reprocess.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import STATE, Settings


def lake_of(root: Path, base: Settings) -> Settings:
    """The settings of the lake ``bench_pipeline`` left under ``root`` (one slot)."""
    [lake] = root.glob("lake-*")
    [lancedb] = root.glob("lancedb-*")
    overrides = base.model_dump()
    overrides["lake"].update(root=str(lake), checkpoint_root=str(root / "ckpt-reprocess"))
    overrides["lancedb"]["uri"] = str(lancedb)
    overrides["object_store"].update(mode="local", local_root=str(root / "objects"))
    return Settings(**overrides)


def timed_reprocess(spark, settings: Settings, *, chunk_size: int | None) -> dict:
    from lake.reprocess import Progress, Scope, reprocess

    started = time.perf_counter()
    firsts: dict[str, float] = {}

    def mark(step: Progress) -> None:
        firsts.setdefault(step.stage, time.perf_counter() - started)

    result = reprocess(spark, settings, Scope("all"), chunk_size=chunk_size, progress=mark)
    total = time.perf_counter() - started
    build_end = firsts.get("index", total)
    check_start = firsts.get("check", build_end)
    switch_start = firsts.get("switch", total)
    return {
        "version": result.version.version,
        "chunk_size": result.version.chunk_size,
        "documents": result.documents,
        "chunks": sum(result.chunks.values()),
        "total_s": total,
        "stages": {
            "prepare": firsts.get("document", 0.0),
            "build": build_end - firsts.get("document", 0.0),
            "index": check_start - build_end,
            "checks": switch_start - check_start,
            "switch": total - switch_start,
        },
        "checks": result.checks,
        "build_steps": result.step_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=500, help="pages of the generated book")
    parser.add_argument("--chunk-size", type=int, default=300, help="the second reprocess's chunk size")
    parser.add_argument("--placement", choices=("executors", "driver"), default="executors")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.extract import cpu_line
    from bench.ingest import bench_pipeline, book_document
    from bench.pngplot import stacked_bars
    from spark_jobs.ingest_documents import spark_session

    cpu = cpu_line()
    print(cpu)
    base = Settings()
    document = book_document(args.pages)
    out_dir = STATE / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-reprocess-") as tmp:
        root = Path(tmp)
        spark = spark_session(base)
        try:
            print(f"first ingestion of {document.name} (stream, embedding on {args.placement}) ...", flush=True)
            first = bench_pipeline(document, base, root, placement=args.placement, spark=spark)
            print(f"  {first['total_s']:.1f} s upload -> searchable, {first['indexed_s']:.1f} s -> indexed")
            settings = lake_of(root, base)
            runs = []
            for chunk_size in (None, args.chunk_size):
                label = "same settings" if chunk_size is None else f"chunk size {chunk_size}"
                print(f"reprocess --all, {label} ...", flush=True)
                run = timed_reprocess(spark, settings, chunk_size=chunk_size)
                run["label"] = label
                runs.append(run)
                print(f"  {run['total_s']:.1f} s -> index version {run['version']} live ({run['chunks']} chunks)")
        finally:
            spark.stop()
    print(f"\n{'':34}{'seconds':>9}{'x first ingestion':>20}")
    print(f"{'first ingestion (upload -> indexed)':34}{first['indexed_s']:9.1f}{1.0:20.2f}")
    for run in runs:
        name = f"reprocess, {run['label']}"
        print(f"{name:34}{run['total_s']:9.1f}{run['total_s'] / first['indexed_s']:20.2f}")
        print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in run["stages"].items()))
        print("    build: " + ", ".join(f"{k} {v:.1f} s" for k, v in run["build_steps"].items()))
    summary = {"cpu": cpu, "cpu_count": os.cpu_count(), "document": document.name, "pages": document.pages,
               "first_ingestion": first, "reprocess": runs}  # fmt: skip
    (out_dir / "reprocess.json").write_text(json.dumps(summary, indent=2, default=str))
    bars = [(f"first ingestion ({args.placement})", list(first["stages"].items()))]
    bars += [(f"reprocess, {run['label']}", list(run["stages"].items())) for run in runs]
    stacked_bars(out_dir / "reprocess.png", f"{document.name}: seconds ({cpu[:60]})", bars, unit="s")
    print(f"\nwrote {out_dir / 'reprocess.json'} and {out_dir / 'reprocess.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
