"""Helpers of the edge tests."""

from __future__ import annotations

import random
import socket

from deploy.stack import port_in_use


def free_ports(count: int, *, start: int = 21000, end: int = 32000) -> list[int]:
    """``count`` consecutive free loopback ports below Linux's ephemeral range (API instances
    take ``api.port + i``)."""
    for _ in range(200):
        first = random.randrange(start, end - count)
        ports = list(range(first, first + count))
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        if not any(port_in_use(port) for port in ports):
            return ports
    raise RuntimeError("no free loopback ports")
