"""Warehouse load throughput: 1M rows of ``gold/quiz_items`` (Delta) through the loader beside the
same INSERT … SELECT done natively by chdb (``deltaLakeLocal``) in the same run and session.

The ratio (loader time / native time) is the loader's overhead: delta-rs reading the Delta log for
the files added since the watermark, the engine reading those Parquet files (``file()``) in an
``INSERT … SELECT``, the watermark. The target is <= 2x. Also timed: a second
load with nothing new (the stored Delta version matches: no data file is read).

    PYTHONPATH=. .venv/bin/python bench/warehouse.py [--rows 1000000] [--repeat 2]

Prints the CPU model and flags; writes JSON and a PNG under .lakehouse/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# project's ``warehouse`` package: put the checkout first instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from core.settings import STATE, Settings  # noqa: E402

_COLUMNS = (
    "item_id, quiz_id, document_id, version, course_id, generator, generator_version, run_at, position, kind,"
    " question, options, correct_option_id, explanation, source_chunk_id, page, section_id, difficulty, fact"
)


def cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
    keep = ("avx", "amx", "sse4", "aes", "bmi")
    return model, sorted(f for f in flags if f.startswith(keep) or f in ("fma", "f16c", "popcnt"))


def make_lake(settings: Settings, rows: int, files: int) -> float:
    """Writes ``rows`` synthetic quiz items into gold/quiz_items in ``files`` commits; returns seconds."""
    from datetime import UTC, datetime

    import pyarrow as pa
    from deltalake import write_deltalake

    from lake.gold import GOLD_QUIZ_ITEMS, GOLD_SCHEMAS
    from lake.tables import delta_location

    path, options = delta_location(settings, GOLD_QUIZ_ITEMS)
    schema = GOLD_SCHEMAS[GOLD_QUIZ_ITEMS]
    started = time.perf_counter()
    per_file = rows // files
    run_at = datetime(2026, 12, 1, tzinfo=UTC)
    option_json = json.dumps([{"option_id": o, "text": f"option {o}"} for o in "abcd"])
    for f in range(files):
        ids = range(f * per_file, (f + 1) * per_file)
        quiz = [f"quiz-{i // 10:07d}" for i in ids]
        columns = {
            "item_id": [f"item-{i:08d}" for i in ids],
            "quiz_id": quiz,
            "document_id": [f"doc-{i // 100:06d}" for i in ids],
            "version": [1] * per_file,
            "course_id": [f"course-{i // 10_000:03d}" for i in ids],
            "generator": ["offline"] * per_file,
            "generator_version": ["bench-1"] * per_file,
            "run_at": [run_at] * per_file,
            "position": [i % 10 for i in ids],
            "kind": ["mcq"] * per_file,
            "question": [f"What does term {i} of the course mean?" for i in ids],
            "options": [option_json] * per_file,
            "correct_option_id": ["abcd"[i % 4] for i in ids],
            "explanation": ["The definition is on the cited page."] * per_file,
            "source_chunk_id": [f"chunk-{i:08d}" for i in ids],
            "page": [1 + i % 500 for i in ids],
            "section_id": [f"s{i % 30}" for i in ids],
            "difficulty": ["medium"] * per_file,
            "fact": [f"fact {i}" for i in ids],
        }
        write_deltalake(path, pa.table(columns, schema=schema), mode="append", storage_options=options)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4, help="Delta commits the rows are written in")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    from lake.gold import GOLD_QUIZ_ITEMS
    from lake.tables import delta_location
    from warehouse.client import warehouse_session
    from warehouse.load import WarehouseLoader
    from warehouse.schema import migrate

    model, flags = cpu()
    print(f"CPU: {model}, {os.cpu_count()} CPUs; flags: {' '.join(flags)}")
    root = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    cwd = Path.cwd()
    os.chdir(root)  # chdb's file table functions read only under its user_files path, the working directory
    try:
        base = Settings().model_dump()
        base["lake"]["root"] = str(root / "lake")
        base["warehouse"]["dsn"] = f"chdb://{root / 'warehouse'}"
        settings = Settings(**base)
        write_s = make_lake(settings, args.rows, args.files)
        print(f"lake: {args.rows:,} rows in {args.files} Delta commits written in {write_s:.1f} s")
        path, _options = delta_location(settings, GOLD_QUIZ_ITEMS)
        loader_s, native_s = [], []
        with warehouse_session(settings.warehouse) as client:
            migrate(client)
            client.command("CREATE TABLE IF NOT EXISTS bench_native AS dim_quiz_items")
            loader = WarehouseLoader(settings, client)
            version = None
            for attempt in range(args.repeat):
                client.command("TRUNCATE TABLE dim_quiz_items")
                started = time.perf_counter()
                report = loader.load_lake({})  # no watermark: every file of the table
                loader_s.append(time.perf_counter() - started)
                assert report.rows == args.rows, report
                version = client.query("SELECT max(delta_version) FROM dim_quiz_items").result_rows[0][0]
                client.command("TRUNCATE TABLE bench_native")
                started = time.perf_counter()
                client.command(
                    f"INSERT INTO bench_native ({_COLUMNS}, delta_version) SELECT {_COLUMNS}, {int(version)}"
                    f" FROM deltaLakeLocal('{path}')"
                )
                native_s.append(time.perf_counter() - started)
                print(f"run {attempt + 1}: loader {loader_s[-1]:.2f} s, native INSERT … SELECT {native_s[-1]:.2f} s")
            same = client.query(
                "SELECT (SELECT count(), groupBitXor(cityHash64(*)) FROM dim_quiz_items)"
                " = (SELECT count(), groupBitXor(cityHash64(*)) FROM bench_native)"
            ).result_rows[0][0]
            started = time.perf_counter()
            idle = loader.load_lake({f"delta:{GOLD_QUIZ_ITEMS}": str(version)})
            idle_s = time.perf_counter() - started
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)

    loader_best, native_best = min(loader_s), min(native_s)
    ratio = loader_best / native_best
    result = {
        "cpu": model,
        "flags": flags,
        "rows": args.rows,
        "delta_commits": args.files,
        "loader_s": loader_s,
        "native_s": native_s,
        "loader_rows_per_s": args.rows / loader_best,
        "native_rows_per_s": args.rows / native_best,
        "ratio": ratio,
        "same_rows_and_checksum": bool(same),
        "unchanged_reload_s": idle_s,
        "unchanged_reload_rows": idle.rows,
        "median_loader_s": statistics.median(loader_s),
    }
    print(
        f"loader {result['loader_rows_per_s']:,.0f} rows/s vs native {result['native_rows_per_s']:,.0f} rows/s:"
        f" {ratio:.2f}x (target <= 2x); same rows and checksum: {bool(same)}"
    )
    print(f"a load with nothing new: {idle.rows} rows in {idle_s * 1000:.1f} ms ({idle.watermark})")
    out = STATE / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "warehouse.json").write_text(json.dumps(result, indent=2))
    chart(result, out / "warehouse.png")
    print(f"wrote {out / 'warehouse.json'} and {out / 'warehouse.png'}")
    return 0


def chart(result: dict, path: Path) -> None:
    """Two horizontal bars (rows/s), the ratio and the CPU, as a PNG (Pillow)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (900, 260), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 12), f"Warehouse load of {result['rows']:,} rows (gold/quiz_items -> ClickHouse/chdb)", fill="black")
    peak = max(result["loader_rows_per_s"], result["native_rows_per_s"])
    bars = [("loader (delta-rs file list + file())", result["loader_rows_per_s"], "#3366cc"),
            ("chdb INSERT ... SELECT deltaLakeLocal", result["native_rows_per_s"], "#999999")]  # fmt: skip
    for index, (label, value, colour) in enumerate(bars):
        y = 50 + index * 60
        draw.text((20, y + 12), label, fill="black")
        width = int(500 * value / peak)
        draw.rectangle([300, y, 300 + width, y + 36], fill=colour)
        draw.text((310 + width, y + 12), f"{value:,.0f} rows/s", fill="black")
    draw.text((20, 180), f"ratio loader/native: {result['ratio']:.2f}x (target <= 2x)", fill="black")
    draw.text((20, 205), f"CPU: {result['cpu']}", fill="black")
    draw.text((20, 228), f"load with nothing new: {result['unchanged_reload_s'] * 1000:.1f} ms", fill="black")
    image.save(path)


if __name__ == "__main__":
    raise SystemExit(main())
