"""Helpers of the fault tests: private service instances (own state dir, free ports, stopped by
PID through ``deploy.stack.Stack``) and the printed count tables."""

from __future__ import annotations

import contextlib
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from core.settings import Settings


def free_port(*, pair: bool = False) -> int:
    """A free loopback port (with ``pair``, also the port after it: MinIO's console)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not pair or (port < 65535 and _free(port + 1)):
            return port
    raise RuntimeError("no free port pair on loopback")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def derive(settings: Settings, **sections: dict) -> Settings:
    data = settings.model_dump()
    for section, values in sections.items():
        data[section].update(values)
    return Settings(**data)


def private_settings(base: Settings, service: str, state_dir: Path) -> Settings:
    """``base`` with ``service`` moved to free ports and a private state dir (data, logs, PIDs)."""
    stack = {"state_dir": state_dir, "services": (service,), "install_missing": False}
    if service == "redis":
        return derive(base, stack=stack, redis={"port": free_port(), "url": None})
    if service == "kafka":
        return derive(
            base, stack=stack, kafka={"port": free_port(), "controller_port": free_port(), "bootstrap_servers": None}
        )
    if service == "objectstore":
        store = {"mode": "s3", "port": free_port(pair=True), "endpoint_url": None}
        return derive(base, stack=stack, object_store=store)
    raise ValueError(f"no private instance recipe for {service!r}")


@contextlib.contextmanager
def private_service(base: Settings, service: str, state_dir: Path) -> Iterator[tuple[object, Settings]]:
    """Starts a private ``service`` (the shared stack is never touched); stopped by PID at the end."""
    from deploy.stack import Stack

    settings = private_settings(base, service, state_dir)
    stack = Stack(settings)
    stack.up()
    try:
        yield stack, settings
    finally:
        stack.down()


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def doubled(values: Iterable[object]) -> list[object]:
    return sorted(str(v) for v, n in Counter(values).items() if n > 1)


def format_counts(scenario: str, rows: list[tuple[str, object, object]]) -> str:
    """The counts a fault test compared, as a small table (printed by the ``report_counts`` fixture)."""
    width = max(len(name) for name, _, _ in rows)
    lines = [f"\n[{scenario}] compared counts", f"  {'what':<{width}}  {'expected':>9}  {'found':>9}"]
    lines += [f"  {name:<{width}}  {expected!s:>9}  {found!s:>9}" for name, expected, found in rows]
    return "\n".join(lines)
