"""What the stack knows of one service: how to start, probe and set it up, and its status."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.settings import Settings

LOOPBACK = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """A service did not start or did not become healthy; the message names it."""


@dataclass
class Service:
    """How to start, probe and set up one service."""

    name: str
    ports: tuple[int, ...]
    argv: list[str]
    health: Callable[[], None]
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: int = signal.SIGTERM


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    latency_ms: float | None
    detail: str


class StackPlaces(Protocol):
    """What a service builder needs of the stack: the settings and where a service keeps its data."""

    settings: Settings

    def data_dir(self, name: str) -> Path: ...
