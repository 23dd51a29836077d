"""The course service's hot path against the framework's floor, driven by ``wrk`` in one run.

The floor is a plain ``def`` endpoint (FastAPI runs it in its thread pool), as in the first
measurements; the same app's ``async def`` twin is shown beside it (no thread-pool hop).

Three uvicorn processes (one worker each, the same uvicorn options): a bare FastAPI app that
returns the same small JSON (the floor), the API with the Redis cache on, the API with
``api.cache_enabled=false``. ``wrk`` (a native load generator, a separate process) drives, one
after another and for ``--rounds`` alternating rounds: the floor, ``/healthz``, a cached
authenticated ``GET /v1/courses/{id}``, the same read uncached (PostgreSQL every time) and a
course search (on a few hundred chunks written to a private LanceDB). A Lua script adds the
token and prints the latency percentiles. Reports req/s, p50, p99 and the ratio to the floor's
req/s; the best round of each endpoint counts (the least disturbed by the other tenants of the
machine). Writes ``.lakehouse/bench/api.json`` (results kept per ``--label``, so ``before``
and ``after`` sit side by side) and ``api.png``. Benchmarks never assert times.

    flock /tmp/lakehouse-heavy.lock env PYTHONPATH=. .venv/bin/python bench/api.py --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wrk import UVICORN_ARGS, WRK_SCRIPT, Server, private_stack, run_wrk, seed  # noqa: E402
from core.settings import Settings  # noqa: E402

OUT_DIR = ROOT / ".lakehouse" / "bench"
FLOOR_BODY = {"status": "ok"}


def floor_app():
    """The framework's floor: FastAPI returning the same small JSON as ``/healthz``, nothing else."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    def floor() -> dict:
        return FLOOR_BODY

    @app.get("/async")
    async def floor_async() -> dict:
        return FLOOR_BODY

    return app


def cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    return model, flags


def seed_chunks(settings: Settings, course_id: str, count: int) -> None:
    """``count`` chunks of generated prose in the course, embedded with the pipeline's embedder."""
    from lake.vectors import chunk_rows, connect, ensure_fts_index, open_chunks, upsert_chunks
    from processing.embedding import get_embedder

    words = "matrix vector eigenvalue basis span kernel rank determinant inverse linear map subspace".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(60)) + f" passage {i}" for i in range(count)]
    vectors = get_embedder(settings.embedding).encode(texts)
    document_id = str(uuid.uuid4())
    rows = [
        {
            "chunk_id": f"{document_id}:1:{i}",
            "document_id": document_id,
            "version": 1,
            "course_id": course_id,
            "chunk_index": i,
            "page_start": i // 3 + 1,
            "page_end": i // 3 + 1,
            "text": text,
            "vector": vector.tolist(),
        }
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]
    table = open_chunks(connect(settings.lancedb), settings.lancedb)
    upsert_chunks(table, chunk_rows(rows))
    ensure_fts_index(table)


def plot(results: dict[str, Any], path: Path) -> Path:
    """A PNG with matplotlib; without it (not in the lock file) a plain SVG bar chart."""
    try:
        import matplotlib
    except ImportError:
        return _svg_plot(results, path.with_suffix(".svg"))

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    endpoints = list(next(iter(results.values()))["endpoints"])
    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs = [e + i * width for e in range(len(endpoints))]
        rows = results[label]["endpoints"]
        ax_rps.bar(xs, [rows.get(e, {}).get("rps", 0) for e in endpoints], width, label=label)
        ax_p99.bar(xs, [rows.get(e, {}).get("p99_ms", 0) for e in endpoints], width, label=label)
    for ax, title in ((ax_rps, "req/s (higher is better)"), (ax_p99, "p99 ms (lower is better)")):
        ax.set_xticks([e + width * (len(labels) - 1) / 2 for e in range(len(endpoints))])
        ax.set_xticklabels(endpoints, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend()
    fig.suptitle("course service vs the bare FastAPI floor (wrk -t1, 1 uvicorn worker)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _svg_plot(results: dict[str, Any], path: Path) -> Path:
    """req/s per endpoint and label as horizontal bars, p99 written beside each bar."""
    labels = list(results)
    endpoints = list(next(iter(results.values()))["endpoints"])
    top = max(row["rps"] for r in results.values() for row in r["endpoints"].values())
    colours = ["#888888", "#1f77b4", "#2ca02c", "#d62728"]
    bar, gap, left, width = 16, 14, 190, 520
    lines, y = [], 40
    for endpoint in endpoints:
        lines.append(f'<text x="4" y="{y + bar}" font-size="12">{endpoint}</text>')
        for i, label in enumerate(labels):
            row = results[label]["endpoints"].get(endpoint)
            if row is None:
                continue
            length = max(1.0, width * row["rps"] / top)
            lines.append(
                f'<rect x="{left}" y="{y}" width="{length:.0f}" height="{bar - 2}" fill="{colours[i % 4]}"/>'
                f'<text x="{left + length + 4:.0f}" y="{y + bar - 4}" font-size="11">{label}: {row["rps"]:.0f} req/s,'
                f" p99 {row['p99_ms']:.1f} ms, {row['ratio_to_floor']:.2f}x floor</text>"
            )
            y += bar
        y += gap
    title = "course service vs the bare FastAPI floor (wrk -t1, 1 uvicorn worker)"
    body = "".join(lines)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="{y + 10}" font-family="sans-serif">'
        f'<text x="4" y="20" font-size="14">{title}</text>{body}</svg>'
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="Name of this run in api.json (e.g. before, after)")
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds over the endpoints")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=300, help="Chunks in the searched course")
    parser.add_argument(
        "--uvicorn-args",
        default=" ".join(UVICORN_ARGS),
        help="Options every uvicorn process gets (the floor's and the API's)",
    )
    args = parser.parse_args()
    uvicorn_args = args.uvicorn_args.split()

    model, flags = cpu_model_and_flags()
    interesting = sorted(f for f in flags if f.startswith(("avx", "amx", "sse4", "aes")) or f in ("fma", "f16c"))
    print(f"CPU: {model}, {os.cpu_count()} CPUs; flags: {' '.join(interesting)}")

    rounds: dict[str, list[dict[str, Any]]] = {}
    memory: dict[str, float] = {}
    with private_stack(lance_prefix="bench-api-lance-") as stack:
        settings, env = stack.settings, stack.env
        script = stack.lance_dir / "bench.lua"
        script.write_text(WRK_SCRIPT)
        floor = Server("bench.api:floor_app", {}, ready_path="/", uvicorn_args=uvicorn_args)
        cached = Server(
            "api.main:app_from_env",
            {**env, "LAKEHOUSE_API__CACHE_ENABLED": "true"},
            ready_path="/readyz",
            uvicorn_args=uvicorn_args,
        )
        uncached = Server(
            "api.main:app_from_env",
            {**env, "LAKEHOUSE_API__CACHE_ENABLED": "false"},
            ready_path="/readyz",
            uvicorn_args=uvicorn_args,
        )
        with floor, cached, uncached:
            time.sleep(2)
            memory["api_idle_rss_mb"] = cached.rss_mb()
            memory["api_idle_pss_mb"] = cached.pss_mb()
            token, course_id = seed(cached.url, title="Benchmarks 101")
            seed_chunks(settings, course_id, args.chunks)
            targets = {
                "floor (bare FastAPI)": (f"{floor.url}/", ""),
                "floor, async def": (f"{floor.url}/async", ""),
                "/healthz": (f"{cached.url}/healthz", ""),
                "course read, cached": (f"{cached.url}/v1/courses/{course_id}", token),
                "course read, uncached": (f"{uncached.url}/v1/courses/{course_id}", token),
                "search": (f"{cached.url}/v1/courses/{course_id}/search?q=eigenvalue+of+a+linear+map&k=10", token),
            }
            for url, auth in targets.values():  # warm-up: connections, caches, first search
                run_wrk(url, token=auth, seconds=1, connections=args.connections, script=script)
            for round_number in range(args.rounds):
                for name, (url, auth) in targets.items():
                    result = run_wrk(url, token=auth, seconds=args.seconds, connections=args.connections, script=script)
                    rounds.setdefault(name, []).append(result)
                    print(
                        f"  round {round_number + 1} {name:<24}{result['rps']:>9.0f} req/s  "
                        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  non-2xx {result['non_2xx']}"
                    )
            memory["api_rss_after_load_mb"] = cached.rss_mb()
            memory["api_pss_after_load_mb"] = cached.pss_mb()

    best = {name: max(results, key=lambda r: r["rps"]) for name, results in rounds.items()}
    # The floor is the plain `def` endpoint (FastAPI runs it in its thread pool); the ratio
    # to the same app's `async def` twin (no thread-pool hop) is reported beside it.
    floor_rps = best["floor (bare FastAPI)"]["rps"]
    async_floor = best.get("floor, async def")
    for row in best.values():
        row["ratio_to_floor"] = row["rps"] / floor_rps
        if async_floor is not None:
            row["ratio_to_async_floor"] = row["rps"] / async_floor["rps"]
    print(
        f"\n[{args.label}] wrk -t1 -c{args.connections}, {args.seconds:g} s x {args.rounds} rounds (best round), "
        f"1 uvicorn worker ({' '.join(uvicorn_args)}), {os.cpu_count()} CPUs shared with wrk\n"
    )
    print(f"{'endpoint':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x floor':>9}{'x async':>9}{'non-2xx':>9}")
    for name, row in best.items():
        print(
            f"{name:<26}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['ratio_to_floor']:>8.2f}x{row.get('ratio_to_async_floor', 0):>8.2f}x{row['non_2xx']:>9}"
        )
    idle, loaded = memory["api_idle_rss_mb"], memory["api_rss_after_load_mb"]
    print(
        f"\nAPI resident memory: idle {idle:.0f} MB RSS / {memory['api_idle_pss_mb']:.0f} MB PSS, after the load"
        f" {loaded:.0f} MB RSS / {memory['api_pss_after_load_mb']:.0f} MB PSS"
    )

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "api.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[args.label] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "uvicorn_args": uvicorn_args,
        "endpoints": best,
        "all_rounds": rounds,
        "memory": memory,
    }
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out} and {plot(results, OUT_DIR / 'api.png')}")


if __name__ == "__main__":
    main()
