"""Notification WebSockets at scale: memory per connection, Redis clients, delivery latency.

Starts the API and, for each N in ``--connections``, separate client processes (at most 8,000
sockets each) that open N WebSockets of N distinct students (access
tokens minted with the server's key: no 20k argon2 sign-ups), waits for every snapshot, then
publishes ``--events`` job events to randomly chosen connected students on their Redis
channels (as a worker does) and times each until its socket receives it. Reported per N: the
server's RSS growth per connection (the sum over its worker processes of (RSS with N open -
RSS before), / N), Redis ``connected_clients`` before and while the N are open, the instance's
pub/sub connections (one per worker process, whatever N), the sockets each worker holds, and
delivery p50/p99. ``--ws`` compares uvicorn's WebSocket implementations.

``--workers`` lists the instance layouts, e.g. ``1,2``: one process may hold at most the hard
``RLIMIT_NOFILE`` descriptors (20,000 here; raising it needs CAP_SYS_RESOURCE, which this machine
does not grant even to root), so a single worker is measured up to that limit less its own
descriptors (``--max-per-process``, sizes above it are clamped), and the 2-core deployment
(uvicorn ``--workers 2`` on one port: the kernel spreads accepted connections over both) takes
the full 20k. Both processes raise their own soft descriptor limit (``resource.setrlimit``),
nothing system-wide. Writes ``.lakehouse/bench/websockets.json`` and a plot. Benchmarks never
assert.

    flock /tmp/lakehouse-heavy.lock env PYTHONPATH=. .venv/bin/python bench/websockets.py
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `websockets` package: search the project root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.api import OUT_DIR, cpu_model_and_flags  # noqa: E402
from bench.wrk import Server  # noqa: E402
from core.redis import redis_client  # noqa: E402
from core.settings import RedisSettings, Settings  # noqa: E402
from deploy.migrate import create_databases, drop_databases, migrate  # noqa: E402

FD_LIMIT = 65536
PER_CLIENT = 8000


def raise_fd_limit() -> None:
    """This process may hold FD_LIMIT descriptors (root may raise the hard limit too)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(hard, FD_LIMIT)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def mint_token(secret: str, user_id: str) -> str:
    import jwt

    from api.auth import ALGORITHM, ISSUER

    now = int(time.time())
    claims = {"sub": user_id, "role": "student", "sid": "", "typ": "access", "iss": ISSUER, "iat": now}
    return jwt.encode({**claims, "exp": now + 3600}, secret, ALGORITHM)


# ---- the client process --------------------------------------------------------------------
async def client_main(args: argparse.Namespace) -> None:
    import websockets

    from core.keys import notifications_channel

    users = [str(uuid.uuid4()) for _ in range(args.n)]
    url = f"ws://127.0.0.1:{args.port}/v1/notifications?access_token="
    sockets: dict[str, Any] = {}
    gate = asyncio.Semaphore(200)
    started = time.perf_counter()

    async def connect(user_id: str) -> None:
        async with gate:
            socket = await websockets.connect(
                url + mint_token(args.secret, user_id), open_timeout=60, ping_interval=None, max_queue=4
            )
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 60))
            assert snapshot["type"] == "snapshot", snapshot
            sockets[user_id] = socket

    await asyncio.gather(*(connect(u) for u in users))
    # The load generator's own thousands of connection objects stay out of its full GC passes,
    # so a collection pause here is not reported as delivery latency.
    gc.freeze()
    print(f"READY {len(sockets)} {time.perf_counter() - started:.1f}", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the parent measured the server at rest

    if args.events == 0:  # a helper client: only holds its connections open
        print("RESULT {}", flush=True)
        await asyncio.gather(*(s.close() for s in sockets.values()), return_exceptions=True)
        return
    redis = redis_client(RedisSettings.model_validate_json(args.redis))
    latencies: list[float] = []
    chosen = random.sample(users, min(args.events, len(users)))
    for user_id in chosen:
        event = {"type": "job", "job": {"job_id": secrets.token_hex(4), "user_id": user_id}, "sent": time.time()}
        redis.publish(notifications_channel(user_id), json.dumps(event))
        received = json.loads(await asyncio.wait_for(sockets[user_id].recv(), 30))
        latencies.append(time.time() - received["sent"])
        await asyncio.sleep(args.pause_ms / 1000)
    redis.close()
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    result = {"delivered": len(latencies), "p50_ms": quantiles[49] * 1000, "p99_ms": quantiles[98] * 1000}
    print("RESULT " + json.dumps(result), flush=True)
    await asyncio.gather(*(s.close() for s in sockets.values()), return_exceptions=True)


# ---- the parent ----------------------------------------------------------------------------
def redis_clients(settings: Settings) -> int:
    client = redis_client(settings.redis)
    try:
        return int(client.info("clients")["connected_clients"])
    finally:
        client.close()


def hub_connections(settings: Settings, pids: list[int]) -> int:
    prefixes = tuple(f"lakehouse-api-hub-{pid}-" for pid in pids)
    client = redis_client(settings.redis)
    try:
        return sum(1 for c in client.client_list() if c.get("name", "").startswith(prefixes))
    finally:
        client.close()


def worker_processes(server: Server) -> list[Any]:
    """The processes that serve requests: uvicorn's worker children, or the server itself."""
    import psutil

    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    # uvicorn --workers N spawns N children through multiprocessing (no resource tracker among them).
    workers = [child for child in process.children() if "spawn_main" in " ".join(child.cmdline())]
    return workers or [process]


def measure(server: Server, settings: Settings, secret: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    workers = worker_processes(server)
    time.sleep(1)
    rss_before = [w.memory_info().rss for w in workers]
    fds_before = [w.num_fds() for w in workers]
    clients_before = redis_clients(settings)
    # One client process holds at most PER_CLIENT sockets (a process may not raise its
    # descriptor limit above the hard limit, 20,000 here); the first one also measures delivery.
    shares = [min(PER_CLIENT, n - start) for start in range(0, n, PER_CLIENT)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                "--n",
                str(share),
                "--port",
                str(server.port),
                f"--secret={secret}",
                "--redis",
                settings.redis.model_dump_json(),
                "--events",
                str(args.events if index == 0 else 0),
                "--pause-ms",
                str(args.pause_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for index, share in enumerate(shares)
    ]
    connected, connect_seconds = 0, 0.0
    for child in children:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        if not ready or ready[0] != "READY":
            for other in children:
                other.kill()
            raise RuntimeError(f"a client process failed at {n} connections: {ready}")
        connected += int(ready[1])
        connect_seconds = max(connect_seconds, float(ready[2]))
    time.sleep(2)
    rss_open = [w.memory_info().rss for w in workers]
    row = {
        "connections": connected,
        "workers": len(workers),
        "connect_seconds": connect_seconds,
        "server_rss_before_mb": sum(rss_before) / 2**20,
        "server_rss_open_mb": sum(rss_open) / 2**20,
        "worker_rss_open_mb": [r / 2**20 for r in rss_open],
        "bytes_per_connection": (sum(rss_open) - sum(rss_before)) / n,
        # Descriptors each worker gained: its share of the sockets (the kernel balances accepts).
        "sockets_per_worker": [w.num_fds() - before for w, before in zip(workers, fds_before, strict=True)],
        "redis_clients_before": clients_before,
        "redis_clients_open": redis_clients(settings),
        "api_pubsub_connections": hub_connections(settings, [w.pid for w in workers]),
    }
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout is not None
        result = next(line for line in child.stdout if line.startswith("RESULT "))
        row.update(json.loads(result.removeprefix("RESULT ")))
        child.wait(timeout=120)
    time.sleep(2)
    return row


def wait_for_workers(server: Server, workers: int) -> None:
    """Until uvicorn has started every worker process and each answers (start-up loads the model)."""
    import httpx

    deadline = time.monotonic() + 180
    while len(worker_processes(server)) < workers or server.proc is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker processes did not start")
        time.sleep(0.5)
    # /readyz until it has said ok as many times in a row as there are workers (each answers some).
    ok = 0
    while ok < 4 * workers and time.monotonic() < deadline:
        ok = ok + 1 if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200 else 0
        time.sleep(0.2)


def plot(results: dict[str, Any], path: Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        lines = ["<text x='4' y='20' font-size='14'>notification WebSockets per API instance</text>"]
        y = 44
        for ws, rows in results.items():
            for row in rows:
                lines.append(
                    f"<text x='4' y='{y}' font-size='12'>{ws}: {row['connections']} connections:"
                    f" {row['bytes_per_connection'] / 1024:.1f} KiB each, Redis clients {row['redis_clients_open']},"
                    f" delivery p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms</text>"
                )
                y += 18
        svg = path.with_suffix(".svg")
        svg.write_text(f"<svg xmlns='http://www.w3.org/2000/svg' width='900' height='{y}'>{''.join(lines)}</svg>")
        return svg
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mem, ax_lat) = plt.subplots(1, 2, figsize=(11, 4))
    for ws, rows in results.items():
        xs = [r["connections"] for r in rows]
        ax_mem.plot(xs, [r["bytes_per_connection"] / 1024 for r in rows], marker="o", label=ws)
        ax_lat.plot(xs, [r["p99_ms"] for r in rows], marker="o", label=f"{ws} p99")
    ax_mem.set_title("server RSS per connection (KiB)")
    ax_lat.set_title("delivery p99 (ms)")
    for ax in (ax_mem, ax_lat):
        ax.set_xscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 19,500, not 20,000: one process may hold at most 20,000 descriptors on this machine (hard
    # RLIMIT_NOFILE; raising it needs CAP_SYS_RESOURCE), and the server has ~100 of its own.
    parser.add_argument("--connections", default="1000,5000,20000")
    parser.add_argument("--workers", default="1,2", help="Instance layouts: uvicorn worker processes on one port")
    parser.add_argument(
        "--max-per-process",
        type=int,
        default=resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 500,
        help="Most sockets one worker process is given (its hard descriptor limit less its own)",
    )
    parser.add_argument("--ws", default="websockets-sansio,websockets", help="uvicorn --ws implementations")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--pause-ms", type=float, default=5.0)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.client:
        asyncio.run(client_main(args))
        return

    model, flags = cpu_model_and_flags()
    print(f"CPU: {model}, {os.cpu_count()} CPUs; flags: {' '.join(f for f in flags if f.startswith('avx512'))}")
    run = uuid.uuid4().hex[:8]
    secret = secrets.token_hex(32)
    settings = Settings(
        postgres={"shards": 2, "shard_db_prefix": f"lakehouse_bench_{run}_"}, redis={"key_prefix": f"bench:{run}:"}
    )
    env = {
        "LAKEHOUSE_POSTGRES__SHARDS": "2",
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_API__JWT_SECRET": secret,
        "LAKEHOUSE_API__LOG_LEVEL": "WARNING",
    }
    sizes = [int(n) for n in args.connections.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    create_databases(settings.postgres)
    try:
        migrate(settings.postgres)
        for ws in args.ws.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                layout = f"{ws}, {workers} worker{'s' if workers > 1 else ''}"
                uvicorn_args = ["--workers", str(workers), "--no-access-log", "--log-level", "warning", "--ws", ws]
                uvicorn_args += ["--limit-concurrency", "100000", "--backlog", "4096"]
                server = Server("api.main:app_from_env", env, ready_path="/readyz", uvicorn_args=uvicorn_args)
                with server:  # the server inherits this process's raised descriptor limit
                    wait_for_workers(server, workers)
                    for n in sorted({min(n, args.max_per_process * workers) for n in sizes}):
                        row = measure(server, settings, secret, n, args)
                        results.setdefault(layout, []).append(row)
                        print(
                            f"  {layout:<30}{n:>7} connections: {row['bytes_per_connection'] / 1024:6.1f} KiB each, "
                            f"sockets per worker {row['sockets_per_worker']}, Redis clients "
                            f"{row['redis_clients_before']} -> {row['redis_clients_open']} (instance pub/sub "
                            f"connections {row['api_pubsub_connections']}), delivery p50 {row['p50_ms']:.1f} ms "
                            f"p99 {row['p99_ms']:.1f} ms, connected in {row['connect_seconds']} s",
                            flush=True,
                        )
    finally:
        drop_databases(settings.postgres)

    print(
        f"\n{'layout':<30}{'conns':>7}{'KiB/conn':>10}{'RSS MB':>8}{'pub/sub':>9}{'redis clients':>15}"
        f"{'p50 ms':>8}{'p99 ms':>8}"
    )
    for layout, rows in results.items():
        for row in rows:
            print(
                f"{layout:<30}{row['connections']:>7}{row['bytes_per_connection'] / 1024:>10.1f}"
                f"{row['server_rss_open_mb']:>8.0f}{row['api_pubsub_connections']:>9}"
                f"{row['redis_clients_before']:>7} ->{row['redis_clients_open']:>5}"
                f"{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}"
            )
    print(f"per-process descriptor limit (hard RLIMIT_NOFILE): {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "websockets.json"
    out.write_text(
        json.dumps(
            {
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpu_model": model,
                "cpu_count": os.cpu_count(),
                "fd_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out} and {plot(results, OUT_DIR / 'websockets.png')}")


if __name__ == "__main__":
    main()
