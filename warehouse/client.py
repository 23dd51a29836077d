"""The ClickHouse warehouse behind clickhouse-connect: chdb in-process or a server over HTTP.

One code path for both: ``warehouse_session`` yields a clickhouse-connect ``Client`` whichever the
DSN is (``chdb:///abs/path`` or ``http(s)://user:pass@host:8123/db``); only the opening differs.

chdb runs the ClickHouse engine inside the process and allows **one process per data path**
(the engine locks ``<path>/status``; a second process fails with an unhelpful "Error initializing
EmbeddedServer"). So every user of the warehouse — the loader, the CLI, the report — opens a
short-lived session, and sessions of different processes take turns on a file lock beside the
data path (``<path>.lock``): a session waits at most ``warehouse.busy_wait_s``, then fails with
``WarehouseBusy`` ("warehouse busy (held by pid N since …), retry in N s"). Sessions of one
process share the engine (chdb allows it) and the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from core.settings import WarehouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class WarehouseError(RuntimeError):
    """The warehouse cannot be used as configured (bad DSN, unreachable server)."""


class WarehouseBusy(WarehouseError):
    """Another process holds the embedded warehouse's data path: retry later."""

    def __init__(self, path: Path, *, holder: str, retry_after_s: float) -> None:
        self.path = path
        self.retry_after_s = retry_after_s
        super().__init__(
            f"warehouse busy: {path} is in use by another process ({holder}); retry in {retry_after_s:.0f} s"
            " (or point warehouse.dsn at a ClickHouse server for concurrent users)"
        )


@dataclass(frozen=True)
class Target:
    """Where a DSN points: an embedded data path or a server, and the client's arguments."""

    kind: Literal["chdb", "server"]
    path: Path | None
    database: str
    client_args: dict[str, Any]


def parse_dsn(settings: WarehouseSettings) -> Target:
    """What ``settings.dsn`` means, without connecting. The database is the DSN's path for a
    server (``http://host:8123/db``), else ``warehouse.database``."""
    parsed = urlparse(settings.dsn)
    if parsed.scheme == "chdb":
        location = parsed.path if not parsed.netloc else f"/{parsed.netloc}{parsed.path}"
        if not location or location in ("/", "/memory", "/:memory:") or not location.startswith("/"):
            raise WarehouseError(f"warehouse.dsn {settings.dsn!r}: give an absolute data path (chdb:///abs/path)")
        path = Path(os.path.realpath(location))
        database = _identifier(settings.database)
        return Target("chdb", path, database, {"dsn": f"chdb://{path}"})
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise WarehouseError(f"warehouse.dsn {settings.dsn!r} names no host")
        database = _identifier(unquote(parsed.path.strip("/")) or settings.database)
        args: dict[str, Any] = {
            "host": parsed.hostname,
            "port": parsed.port or (8443 if parsed.scheme == "https" else 8123),
            "interface": parsed.scheme,
            "username": unquote(parsed.username or "default"),
            "password": unquote(parsed.password or ""),
        }
        return Target("server", None, database, args)
    raise WarehouseError(
        f"warehouse.dsn {settings.dsn!r}: the scheme must be chdb:// (embedded) or http(s):// (a ClickHouse server)"
    )


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise WarehouseError(f"warehouse database name {name!r} is not a plain identifier")
    return name


class _PathLock:
    """One process's hold on an embedded data path: an exclusive ``flock`` on ``<path>.lock``,
    counted so that nested sessions of the same process share it."""

    def __init__(self, path: Path) -> None:
        self.lock_path = path.with_name(path.name + ".lock")
        self._count = 0
        self._file: IO[str] | None = None
        self._mutex = threading.Lock()

    def acquire(self, wait_s: float) -> None:
        with self._mutex:
            if self._count:
                self._count += 1
                return
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.lock_path.open("a+")
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "unknown holder"
                        handle.close()
                        raise WarehouseBusy(
                            self.lock_path.with_suffix(""), holder=holder, retry_after_s=max(wait_s, 5.0)
                        ) from None
                    time.sleep(0.1)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
            handle.flush()
            self._file = handle
            self._count = 1

    def release(self) -> None:
        with self._mutex:
            self._count -= 1
            if self._count == 0 and self._file is not None:
                self._file.seek(0)
                self._file.truncate()
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
                self._file = None


_LOCKS: dict[Path, _PathLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> _PathLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, _PathLock(path))


def _open(target: Target) -> Client:
    import clickhouse_connect

    try:
        client = clickhouse_connect.get_client(**target.client_args)
    except Exception as exc:
        raise WarehouseError(f"cannot open the warehouse ({target.kind}): {exc}") from exc
    client.command(f"CREATE DATABASE IF NOT EXISTS {target.database}")
    client.database = target.database
    return client


@contextlib.contextmanager
def warehouse_session(settings: WarehouseSettings, *, wait_s: float | None = None) -> Iterator[Client]:
    """A client on the warehouse's database for the length of a ``with`` block. An embedded
    warehouse is held (file lock + chdb engine) only that long; ``WarehouseBusy`` after
    ``wait_s`` (default ``warehouse.busy_wait_s``) when another process holds it."""
    target = parse_dsn(settings)
    lock = _lock_for(target.path) if target.path is not None else None
    if lock is not None:
        lock.acquire(settings.busy_wait_s if wait_s is None else wait_s)
    try:
        client = _open(target)
        try:
            yield client
        finally:
            client.close()
    finally:
        if lock is not None:
            lock.release()


def warehouse_client(settings: WarehouseSettings) -> Client:
    """A long-lived client (a server DSN, or a process that alone uses an embedded path).
    Prefer ``warehouse_session``: it takes turns with other processes."""
    return _open(parse_dsn(settings))
