"""Identifiers generated in the application, so a row's shard is known before its insert."""

from __future__ import annotations

import os
import time
import uuid

_CHUNK_NAMESPACE = uuid.UUID("6f1c1f5e-8d1a-4a57-9d0e-6c1c7b2f0a11")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): index-friendly primary keys."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 64 & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def chunk_id(document_id: str, version: int, chunk_index: int) -> str:
    """Stable chunk id: the same (document, version, index) always gives the same id, so a
    replayed batch MERGEs onto the rows it already wrote instead of adding new ones."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{document_id}:{version}:{chunk_index}"))


def page_id(document_id: str, version: int, page_number: int) -> str:
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"page:{document_id}:{version}:{page_number}"))
