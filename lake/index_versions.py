"""Index versions: which LanceDB chunks table search serves, and the registry recording them.

An index version is one LanceDB table of chunks built with one set of chunking and embedding
settings. Version 1 is the table the ingestion stream has always written
(``lancedb.chunks_table``, ``chunks``); a reprocess builds version N beside it as
``chunks_v<N>`` and switches to it once it is complete and checked (``lake.reprocess``).

The registry is a small LanceDB table, ``index_versions``, in the same database: one row per
version with its settings, scope, state (building -> checked -> live -> retired -> dropped, or
failed) and timestamps. This module is its one writer. The switch is one ``merge_insert`` of
the new live row and the retired one: a single LanceDB commit, so a reader sees either the old
live version or the new one, never both or neither. Without a registry (a lake that never
reprocessed) version 1 is live.

A reprocess's switch retires the old version as ``retiring`` first: until its handover is done
(``lake.reprocess_handover`` copies what the stream wrote into the old table after the
reprocess's catch-up) and it is marked ``retired``, the stream's writer waits before writing
(``settled_live``), and a write it made into the old table meanwhile is written again into the
new one afterwards. So each late write reaches the new table exactly once, and never at the same
time as the handover writes there (two concurrent ``merge_insert``s of a new key can both insert).

Readers resolve the live table through ``live_index``, remembered per database for
``lancedb.read_consistency_s`` (the same staleness LanceDB readers already accept), so a search
pays no registry read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

if TYPE_CHECKING:
    import lancedb

    from core.settings import LanceDBSettings, Settings

log = logging.getLogger(__name__)
REGISTRY_TABLE = "index_versions"
IndexState = Literal["building", "checked", "live", "retiring", "retired", "dropped", "failed"]
_TIMESTAMP = pa.timestamp("us", tz="UTC")
REGISTRY_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("chunk_size", pa.int32(), nullable=False),
        pa.field("chunk_overlap", pa.int32(), nullable=False),
        pa.field("embedding_model", pa.string(), nullable=False),
        pa.field("precision", pa.string(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),  # all | course:<id> | document:<id>
        pa.field("state", pa.string(), nullable=False),
        pa.field("created_at", _TIMESTAMP, nullable=False),
        pa.field("checked_at", _TIMESTAMP),
        pa.field("live_at", _TIMESTAMP),
        pa.field("retired_at", _TIMESTAMP),
        pa.field("note", pa.string()),
    ]
)


@dataclass(frozen=True)
class IndexVersion:
    version: int
    table_name: str
    chunk_size: int
    chunk_overlap: int
    embedding_model: str
    precision: str
    scope: str
    state: IndexState
    created_at: datetime
    checked_at: datetime | None = None
    live_at: datetime | None = None
    retired_at: datetime | None = None
    note: str | None = None

    @property
    def build_settings(self) -> tuple[int, int, str, str]:
        """What decides the rows of the table: chunking and embedding."""
        return (self.chunk_size, self.chunk_overlap, self.embedding_model, self.precision)


def now() -> datetime:
    return datetime.now(UTC)


def first_version(settings: Settings) -> IndexVersion:
    """Version 1: the stream's table with the configured settings (live until a switch)."""
    return IndexVersion(
        version=1,
        table_name=settings.lancedb.chunks_table,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
        embedding_model=settings.embedding.model_package,
        precision=settings.embedding.precision,
        scope="all",
        state="live",
        created_at=datetime(1970, 1, 1, tzinfo=UTC),
    )


def version_table_name(base: str, version: int) -> str:
    return base if version == 1 else f"{base}_v{version}"


def _open(db: lancedb.DBConnection, *, create: bool) -> Any:
    try:
        return db.open_table(REGISTRY_TABLE)
    except (FileNotFoundError, ValueError):
        if not create:
            return None
        return db.create_table(REGISTRY_TABLE, schema=REGISTRY_SCHEMA, exist_ok=True)


def list_versions(db: lancedb.DBConnection) -> list[IndexVersion]:
    """Every registered version, oldest first (empty without a registry)."""
    table = _open(db, create=False)
    if table is None:
        return []
    return sorted((IndexVersion(**row) for row in table.to_arrow().to_pylist()), key=lambda v: v.version)


def live_of(versions: list[IndexVersion]) -> IndexVersion | None:
    """The live version: the one with state ``live`` (the latest switched, should two ever be)."""
    live = [v for v in versions if v.state == "live"]
    return max(live, key=lambda v: (v.live_at or v.created_at, v.version)) if live else None


def live_version(db: lancedb.DBConnection, settings: Settings) -> IndexVersion:
    """The version search serves now (read from the registry, not cached)."""
    return live_of(list_versions(db)) or first_version(settings)


@dataclass(frozen=True)
class LiveIndex:
    version: int
    table_name: str


_LIVE: dict[str, tuple[float, LiveIndex]] = {}


def live_index(db: lancedb.DBConnection, settings: LanceDBSettings) -> LiveIndex:
    """The live version and its table, for readers and the stream's writer: remembered for
    ``read_consistency_s`` per database URI."""
    key = f"{settings.uri}|{settings.chunks_table}"
    moment = time.monotonic()
    cached = _LIVE.get(key)
    if cached is not None and moment - cached[0] < settings.read_consistency_s:
        return cached[1]
    live = live_of(list_versions(db))
    found = LiveIndex(live.version, live.table_name) if live else LiveIndex(1, settings.chunks_table)
    _LIVE[key] = (moment, found)
    return found


def settled_live(
    db: lancedb.DBConnection,
    settings: LanceDBSettings,
    *,
    wait_s: float | None = None,
    poll_s: float = 0.1,
    ignore: Collection[int] = (),
) -> tuple[LiveIndex, list[int]]:
    """The live version and its table read now (not remembered), for the stream's writer, once
    no version is ``retiring`` (a reprocess's handover running; those in ``ignore`` were waited
    for in vain before): waits for that up to ``wait_s`` (``lancedb.handover_wait_s`` unless
    given). Also returns the versions still retiring after the wait (empty unless it timed out)."""
    wait_s = settings.handover_wait_s if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        versions = list_versions(db)
        retiring = [v.version for v in versions if v.state == "retiring" and v.version not in ignore]
        if not retiring or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if retiring:
        log.error("index version(s) %s still retiring after %.1f s (a reprocess stopped before its handover): "
                  "writing on; rerun that reprocess to finish it", retiring, wait_s)  # fmt: skip
    live = live_of(versions)
    return (LiveIndex(live.version, live.table_name) if live else LiveIndex(1, settings.chunks_table)), retiring


def forget_live() -> None:
    """Drops the remembered live versions (tests; a process that just switched)."""
    _LIVE.clear()


def _write(db: lancedb.DBConnection, *versions: IndexVersion) -> None:
    """Upserts rows on ``version`` in one commit."""
    table = _open(db, create=True)
    rows = pa.Table.from_pylist([asdict(v) for v in versions], schema=REGISTRY_SCHEMA)
    table.merge_insert("version").when_matched_update_all().when_not_matched_insert_all().execute(rows)


def create_version(
    db: lancedb.DBConnection,
    settings: Settings,
    *,
    chunk_size: int,
    chunk_overlap: int,
    embedding_model: str,
    precision: str,
    scope: str,
) -> IndexVersion:
    """Registers a new version in state ``building`` (recording version 1 first, as live, when
    the registry is new, so the switch has a row to retire)."""
    versions = list_versions(db)
    if not versions:
        versions = [first_version(settings)]
        _write(db, versions[0])
    number = max(v.version for v in versions) + 1
    created = IndexVersion(
        version=number,
        table_name=version_table_name(settings.lancedb.chunks_table, number),
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        embedding_model=embedding_model,
        precision=precision,
        scope=scope,
        state="building",
        created_at=now(),
    )
    _write(db, created)
    return created


def mark(db: lancedb.DBConnection, version: IndexVersion, state: IndexState, note: str | None = None) -> IndexVersion:
    """Moves ``version`` to ``state`` (checked: with its check time)."""
    updated = replace(version, state=state, note=note if note is not None else version.note)
    if state == "checked":
        updated = replace(updated, checked_at=now())
    _write(db, updated)
    return updated


def switch_live(
    db: lancedb.DBConnection, new: IndexVersion, old: IndexVersion, *, handover: bool = False
) -> IndexVersion:
    """Makes ``new`` (checked) live and retires ``old``, in one registry commit; ``handover``:
    ``old`` is ``retiring`` until ``mark(db, old, "retired")`` (see the module doc)."""
    if new.state not in ("checked", "live"):
        raise ValueError(f"index version {new.version} is {new.state}, not checked: it cannot go live")
    moment = now()
    live = replace(new, state="live", live_at=new.live_at or moment)
    if old.version == new.version:
        _write(db, live)
    else:
        retired = replace(old, state="retiring" if handover else "retired", retired_at=old.retired_at or moment)
        _write(db, live, retired)
    forget_live()
    return live


def expired(versions: list[IndexVersion], *, keep_hours: float, at: datetime) -> list[IndexVersion]:
    """Retired (and failed) versions older than ``keep_hours``: their tables may be dropped."""
    limit = at - timedelta(hours=keep_hours)
    return [
        v
        for v in versions
        if (v.state == "retired" and v.retired_at is not None and v.retired_at <= limit)
        or (v.state == "failed" and v.created_at <= limit)
    ]


def drop_expired(db: lancedb.DBConnection, settings: Settings, *, at: datetime | None = None) -> list[IndexVersion]:
    """Drops the tables of expired versions (never the live one) and marks them ``dropped``."""
    versions = list_versions(db)
    live = live_of(versions)
    dropped = []
    for version in expired(versions, keep_hours=settings.lancedb.index_version_keep_hours, at=at or now()):
        if live is not None and version.table_name == live.table_name:
            continue
        try:
            db.drop_table(version.table_name)
        except (FileNotFoundError, ValueError):
            pass  # dropped before a crash, not yet marked
        dropped.append(mark(db, version, "dropped"))
    return dropped
