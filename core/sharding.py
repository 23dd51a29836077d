"""Which PostgreSQL shard a key lives on: jump consistent hash over the shard map.

Users (and their enrolments, quiz attempts) live on the shard of ``user_id``; courses (and
their documents, membership, jobs) on the shard of ``course_id``. Jump hash moves only
1/N of the keys when a shard is added, and needs no ring state.
"""

from __future__ import annotations

import hashlib
import uuid


def jump_hash(key: int, buckets: int) -> int:
    """Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014)."""
    if buckets < 1:
        raise ValueError("buckets must be >= 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_for(key: uuid.UUID | str, shards: int) -> int:
    """Shard index of an entity id (a UUID, as text or value)."""
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)
