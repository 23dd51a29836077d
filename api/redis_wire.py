"""A minimal pipelined Redis client for the request hot path (single server only).

redis-py's asyncio client spends ~60 µs of CPU per command here (connection pool, locks, a
pure-Python parser), more than the rest of a cached read. This client keeps ONE connection
per instance and pipelines every concurrent request's commands on it: a command is one RESP
write and one future resolved by the protocol's parser. It speaks only what the hot path
sends (EVALSHA/EVAL, MGET, EXISTS); errors surface as redis-py's exception types, so the
gateway's breaker treats them as it treats redis-py's. Redis Cluster keeps redis-py.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any
from urllib.parse import unquote, urlparse

from redis import exceptions as rx


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    pass


def _parse(buffer: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply from ``buffer[pos:]``: (value, next position); raises _Incomplete."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[pos : pos + 1], buffer[pos + 1 : end]
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, pos
        if len(buffer) < pos + length + 2:
            raise _Incomplete
        return buffer[pos : pos + length].decode(), pos + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == b"-":
        message = line.decode()
        error = rx.NoScriptError if message.startswith("NOSCRIPT") else rx.ResponseError
        return error(message), pos
    raise rx.InvalidResponse(f"unexpected reply type {kind!r}")


class _Protocol(asyncio.Protocol):
    """One connection: its own queue of waiting replies (a lost connection fails only its own)."""

    def __init__(self, owner: WireRedis) -> None:
        self.owner = owner
        self.buffer = b""
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        pos, pending = 0, self.pending
        try:
            while pos < len(self.buffer):
                value, pos = _parse(self.buffer, pos)
                if not pending:  # a reply nobody waits for any more (its caller timed out)
                    continue
                future = pending.popleft()
                if not future.done():
                    if isinstance(value, Exception):
                        future.set_exception(value)
                    else:
                        future.set_result(value)
        except _Incomplete:
            pass
        self.buffer = self.buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.protocol is self:
            self.owner.protocol = None
        pending, self.pending = self.pending, collections.deque()
        for future in pending:
            if not future.done():
                future.set_exception(rx.ConnectionError(f"connection lost: {exc}"))


class WireRedis:
    """``execute(*command)`` on one shared, pipelined connection (opened on first use and again
    after it is lost). Raises redis-py's ConnectionError/TimeoutError/ResponseError."""

    def __init__(self, dsn: str, *, timeout_s: float) -> None:
        url = urlparse(dsn)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 6379
        self.password = unquote(url.password) if url.password else None
        self.username = unquote(url.username) if url.username else None
        self.db = int(url.path.lstrip("/") or 0)
        self.timeout_s = timeout_s
        self.protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise rx.ConnectionError(f"connecting to {self.host}:{self.port}: {exc}") from exc
        if self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            await self._send(protocol, auth)
        if self.db:
            await self._send(protocol, ("SELECT", self.db))
        self.protocol = protocol
        return protocol

    async def execute(self, *args: Any) -> Any:
        protocol = self.protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            connecting = self._connecting
            try:
                protocol = await asyncio.shield(connecting)
            finally:
                if self._connecting is connecting and connecting.done():
                    self._connecting = None
        assert protocol is not None
        return await self._send(protocol, args)

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        assert protocol.transport is not None
        future = asyncio.get_running_loop().create_future()
        protocol.pending.append(future)
        protocol.transport.write(_encode(args))
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as exc:
            # A reply may still come for it: the connection is out of step. Start again.
            protocol.transport.close()
            raise rx.TimeoutError(f"no reply within {self.timeout_s} s") from exc

    async def evalsha_or_eval(self, sha: str, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    def close(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
