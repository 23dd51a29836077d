"""Requests/s and p99 through nginx with 1 and 2 API instances behind it, in one run.

``deploy/edge.py`` starts the instances and nginx exactly as ``lakehouse stack up
--api-instances N`` does (private shard databases, a private Redis prefix and state dir).
``wrk`` (a separate process) reads one course (``GET /v1/courses/{id}``, authenticated, cached
in Redis) through nginx for each configuration, alternating over ``--rounds`` rounds; the
best round counts. Configurations: 1 and 2 instances on the whole machine, then the same with
each instance pinned to its own core (``taskset``): 1 instance on core 0, 2 instances on cores
0 and 1. nginx's own floor (a static hashed asset, no API) is measured too. The rate limiter is
off (this measures the edge and the instances, not the token buckets). Prints the CPU model and
flags; writes ``.lakehouse/bench/edge.json`` and ``edge.png``. Benchmarks never assert times.

    flock /tmp/lakehouse-heavy.lock env PYTHONPATH=. .venv/bin/python bench/edge.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wrk import WRK_SCRIPT, run_wrk, seed  # noqa: E402
from core.redis import redis_client  # noqa: E402
from core.settings import Settings  # noqa: E402
from deploy.edge import Edge  # noqa: E402
from deploy.migrate import create_databases, drop_databases, migrate  # noqa: E402
from deploy.stack import Stack  # noqa: E402

OUT_DIR = ROOT / ".lakehouse" / "bench"
CONFIGS = (("1 instance", 1, False), ("2 instances", 2, False), ("1 instance, 1 core", 1, True),
           ("2 instances, 1 core each", 2, True))  # fmt: skip


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


def _free_ports(count: int) -> list[int]:
    """``count`` consecutive free loopback ports below the ephemeral range."""
    import random

    for _ in range(200):
        first = random.randrange(21000, 32000 - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return list(range(first, first + count))
    raise RuntimeError("no free loopback ports")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (taskset -a)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def plot(results: dict[str, dict[str, Any]], floor: dict[str, Any], path: Path) -> Path:
    from bench.pngplot import stacked_bars

    rows = [(f"{name} (p99 {r['p99_ms']:.0f} ms)", [("req/s", r["rps"])]) for name, r in results.items()]
    title = (f"GET /v1/courses/{{id}} through nginx (wrk -t1), best round; nginx's static floor "
             f"{floor['rps']:.0f} req/s")  # fmt: skip
    stacked_bars(path, title, rows, unit="req/s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds over the configurations")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    model, flags = cpu_model_and_flags()
    interesting = sorted(f for f in flags if f.startswith(("avx", "amx", "sse4", "aes")) or f in ("fma", "f16c"))
    cpus = sorted(os.sched_getaffinity(0))
    print(f"CPU: {model}, {len(cpus)} CPUs; flags: {' '.join(interesting)}")

    run = uuid.uuid4().hex[:8]
    api_port, _, edge_port = _free_ports(3)
    state = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    settings = Settings(
        postgres={"shards": 2, "shard_db_prefix": f"lakehouse_bench_{run}_"},
        redis={"key_prefix": f"bench:{run}:"},
        stack={"state_dir": state},
        api={"port": api_port, "rate_limit_enabled": False, "log_level": "WARNING"},
        edge={"port": edge_port},
    )
    create_databases(settings.postgres)
    edge = Edge(Stack(settings))
    script = state / "bench.lua"
    script.write_text(WRK_SCRIPT)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
    floor: list[dict[str, Any]] = []
    try:
        migrate(settings.postgres)
        edge.up(instances=2)
        token, course_id = seed(edge.url, title="Edge 101")
        url = f"{edge.url}/v1/courses/{course_id}"
        asset = json.loads((state / "web" / "manifest.json").read_text())["app.js"]
        for round_ in range(1, args.rounds + 1):
            for name, instances, pinned in CONFIGS:
                status = edge.up(instances=instances)  # stops the extra instance / starts it, reloads nginx
                time.sleep(1.0)
                for index in range(instances):
                    pid = edge.stack.running_pid(f"api-{index}")
                    assert pid is not None
                    pin(pid, {cpus[index % len(cpus)]} if pinned else set(cpus))
                run_wrk(url, token=token, seconds=2, connections=args.connections, script=script)  # warm-up
                row = run_wrk(url, token=token, seconds=args.seconds, connections=args.connections, script=script)
                results[name].append(row)
                print(f"round {round_} {name:<26} ports {status.api_ports}: {row['rps']:7.0f} req/s  "
                      f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  non-2xx {row['non_2xx']}  "
                      f"socket errors {row['socket_errors']}")  # fmt: skip
            row = run_wrk(f"{edge.url}/assets/{asset}", token="", seconds=args.seconds, connections=args.connections,
                          script=script)  # fmt: skip
            floor.append(row)
            print(f"round {round_} {'nginx static (floor)':<26}: {row['rps']:7.0f} req/s  p99 {row['p99_ms']:.1f} ms  "
                  f"non-2xx {row['non_2xx']}")  # fmt: skip
    finally:
        edge.down()
        drop_databases(settings.postgres)
        client = redis_client(settings.redis)
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}*", count=500):
            client.delete(key)
        client.close()

    best = {name: max(rows, key=lambda r: r["rps"]) for name, rows in results.items()}
    ratio = best["2 instances"]["rps"] / best["1 instance"]["rps"]
    ratio_pinned = best["2 instances, 1 core each"]["rps"] / best["1 instance, 1 core"]["rps"]
    print(f"\n{'configuration':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in best.items():
        print(f"{name:<28}{row['rps']:>9.0f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}")
    floor_best = max(floor, key=lambda r: r["rps"])
    print(
        f"{'nginx static (floor)':<28}{floor_best['rps']:>9.0f}{floor_best['p50_ms']:>9.1f}{floor_best['p99_ms']:>9.1f}"
    )
    print(f"2 vs 1 instance: {ratio:.2f}x; pinned one core each: {ratio_pinned:.2f}x")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": model,
        "cpus": len(cpus),
        "cpu_flags": flags,
        "wrk": {"threads": 1, "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds},
        "endpoint": "GET /v1/courses/{id} (authenticated, Redis cache hit) through nginx",
        "best": best,
        "rounds": results,
        "nginx_static_floor": floor_best,
        "ratio_2_vs_1": ratio,
        "ratio_2_vs_1_pinned": ratio_pinned,
    }
    (OUT_DIR / "edge.json").write_text(json.dumps(report, indent=2))
    path = plot(best, floor_best, OUT_DIR / "edge.png")
    print(f"wrote {OUT_DIR / 'edge.json'} and {path}")


if __name__ == "__main__":
    main()
