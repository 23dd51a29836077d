"""Online resharding of the PostgreSQL shards (``lakehouse db reshard --to N``).

Why this module writes across shards: each ``records/`` module is the one writer of its rows on
the shard the router picks, and keeps the domain rules (status only forward, idempotent joins).
Moving rows between shards is not a domain write: it copies whole rows of every sharded table,
unchanged, keyed by primary key (idempotent upserts), verifies them on the new shard, and deletes
the old copies only after the recorded map was switched. Spreading that over eleven tables'
writers would split one protocol over many modules; so this is the one module besides
``records/`` allowed to write those tables, and it never changes a value.

Every step keeps its state in the databases, so a crash (even SIGKILL) at any point is resumed by
running the same command again:

1. **register** (map ``stable``): writes to the old shards pause (``LOCK ... IN SHARE ROW EXCLUSIVE
   MODE``; reads go on) while the write fence (a ``reshard_guard`` trigger per table, present only
   during a move) is created, every key whose shard changes is written to its old shard's
   ``reshard_keys`` as ``pending`` and the map is recorded as ``moving`` on every database; the
   pause lasts until running routers (re-reading the map every ``shard_map_refresh_s``) see it.
2. **copy** in batches of keys: the keys' registry rows are locked ``FOR UPDATE`` (a write to one
   of these keys waits in the ``reshard_guard`` trigger for the batch's duration), their rows are
   upserted on the new shard in one transaction whose per-table counts and checksums must equal
   the old shard's before it commits, then the keys are marked ``moved``. From then on the router
   sends the key to its new shard and the trigger refuses writes to the old copy (a retry is
   routed to the new shard). Keys made during the move by a process that had not seen it yet are
   registered and moved in a last pass.
3. **verify**: per table, every moved row is on its new shard with the same content (rows updated
   there since their copy are counted as such), with row counts and checksums in the report.
4. **switch**: the map is recorded as ``cleanup`` with the new databases (reads route by it).
5. **cleanup**: after the routers saw the switch, the moved rows are deleted from their old shards,
   the registry emptied, the write fence dropped and the map recorded as ``stable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from core.settings import PostgresSettings
from core.shard_map import ShardMap, ShardMapMismatch, configured_databases, describe, read_map
from core.sharding import shard_for

Progress = Callable[[str, int, int], None]  # (phase, done, total); total 0: a step without a count


@dataclass(frozen=True)
class ShardedTable:
    name: str
    columns: tuple[str, ...]  # the routing key: the first of these that is not null

    @property
    def key(self) -> str:
        """SQL expression of the routing key, as text."""
        if len(self.columns) == 1:
            return f"{self.columns[0]}::text"
        return f"coalesce({', '.join(self.columns)})::text"


# Every table that lives on a shard, with its routing key (deploy/migrations); the order is the
# order writers touch them in one transaction (lock order) and the copy order (parents first).
SHARDED_TABLES = (
    ShardedTable("users", ("id",)),
    ShardedTable("email_index", ("email",)),
    ShardedTable("enrolments", ("user_id",)),
    ShardedTable("quiz_attempts", ("user_id",)),
    ShardedTable("card_reviews", ("user_id",)),
    ShardedTable("card_states", ("user_id",)),
    ShardedTable("courses", ("id",)),
    ShardedTable("course_members", ("course_id",)),
    ShardedTable("join_codes", ("code",)),
    ShardedTable("documents", ("course_id",)),
    ShardedTable("jobs", ("course_id", "user_id")),  # a course-less job lives on its user's shard
)
BOOKKEEPING_TABLES = ("schema_migrations", "shard_map", "reshard_keys")


class ReshardError(RuntimeError):
    """The reshard cannot start or a check failed; the message says what to do."""


@dataclass
class TableFigures:
    rows: int = 0
    checksum: int = 0  # sum of the first 60 bits of md5(row as text) over the moved rows
    updated_since_copy: int = 0


@dataclass
class ReshardReport:
    from_map: str
    to_map: str
    keys_moved: int = 0
    tables: dict[str, TableFigures] = field(default_factory=dict)
    resumed_from: str = ""
    seconds: float = 0.0

    @property
    def rows_moved(self) -> int:
        return sum(figures.rows for figures in self.tables.values())


def _guard(table: ShardedTable, *, on: bool) -> sql.Composed:
    """The write fence of a move on one table (function ``reshard_guard``, migration 0004)."""
    if not on:
        return sql.SQL("DROP TRIGGER IF EXISTS reshard_guard ON {}").format(sql.Identifier(table.name))
    return sql.SQL(
        "CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON {}"
        " FOR EACH ROW EXECUTE FUNCTION reshard_guard({})"
    ).format(sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Literal, table.columns)))


def _checksum_query(table: ShardedTable) -> sql.Composed:
    return sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
        " FROM {} t WHERE {} = ANY(%s)"
    ).format(sql.Identifier(table.name), sql.SQL(table.key))


class _Databases:
    """Direct connections to the databases of both maps, by identity (``host:port/database``)."""

    def __init__(self, pg: PostgresSettings) -> None:
        self.pg = pg
        self._shared: dict[str, psycopg.Connection] = {}

    def dsn(self, identity: str) -> str:
        host_port, name = identity.rsplit("/", 1)
        host, port = host_port.rsplit(":", 1)
        password = self.pg.password.get_secret_value()
        return f"postgresql://{self.pg.user}:{password}@{host}:{port}/{name}"

    def new(self, identity: str, *, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(self.dsn(identity), autocommit=autocommit, connect_timeout=self.pg.connect_timeout_s)

    def shared(self, identity: str) -> psycopg.Connection:
        """An autocommit connection kept for the whole run (reads, registry, map writes)."""
        if identity not in self._shared:
            self._shared[identity] = self.new(identity, autocommit=True)
        return self._shared[identity]

    def close(self) -> None:
        for conn in self._shared.values():
            conn.close()


class Resharder:
    """Moves the rows of ``pg``'s recorded map to a map of ``to`` shards (same server and prefix)."""

    def __init__(
        self,
        pg: PostgresSettings,
        *,
        to: int,
        batch_size: int = 200,
        batch_pause_s: float = 0.0,
        progress: Progress | None = None,
    ) -> None:
        if to < 1:
            raise ReshardError("--to must be at least 1")
        self.pg = pg
        self.target = configured_databases(pg.model_copy(update={"shards": to}))
        self.batch_size = batch_size
        self.batch_pause_s = batch_pause_s
        self.routers_see_map_s = 2 * pg.shard_map_refresh_s + 0.2
        self.progress = progress or (lambda phase, done, total: None)
        self.dbs = _Databases(pg)
        self._columns: dict[str, tuple[list[str], list[str]]] = {}

    # ---- the whole run ------------------------------------------------------------------------
    def run(self) -> ReshardReport:
        started = time.monotonic()
        try:
            recorded = self._recorded()
            old, new = self._plan(recorded)
            report = ReshardReport(from_map=describe(old), to_map=describe(new))
            if recorded.state == "stable":
                if old == new:
                    report.seconds = time.monotonic() - started
                    return report
                self._check_target_schema(new)
                recorded = self._register_and_start(recorded, old, new)
            else:
                report.resumed_from = str(recorded)
            if recorded.state == "moving":
                if report.resumed_from:  # the fence of a start that crashed before its commit
                    self._fence(old, on=True)
                self._copy_all(old, new)
                while self._register_stragglers(old, new):
                    self._copy_all(old, new)
                self._verify(old, new, report)
                recorded = self._write_map(ShardMap(recorded.version + 1, new, "cleanup", old))
            else:
                self._verify(old, new, report)  # cleanup: the old copies are still there (or partly)
            self._cleanup(recorded, old, new)
            report.seconds = time.monotonic() - started
            return report
        finally:
            self.dbs.close()

    def _recorded(self) -> ShardMap:
        authority = configured_databases(self.pg)[0]
        try:
            recorded = read_map(self.dbs.shared(authority))
        except psycopg.errors.UndefinedTable:
            recorded = None
        if recorded is None:
            raise ReshardError(f"no shard map is recorded in {authority}: run `lakehouse db migrate` first")
        return recorded

    def _plan(self, recorded: ShardMap) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(old databases, new databases) of the move, after checking the configuration and state."""
        configured = configured_databases(self.pg)
        if not recorded.accepts(configured):
            raise ShardMapMismatch(
                f"configured shard map {describe(configured)} differs from the recorded map {recorded};"
                f" configure postgres.shards={recorded.shards} to reshard from it"
            )
        if recorded.state == "stable":
            return recorded.databases, self.target
        old, new = (
            (recorded.databases, recorded.other_databases)
            if recorded.state == "moving"
            else (recorded.other_databases, recorded.databases)
        )
        if new != self.target:
            raise ReshardError(f"another reshard is in progress ({recorded}): finish it with --to {len(new)} first")
        return old, new

    def _check_target_schema(self, new: tuple[str, ...]) -> None:
        for identity in new:
            try:
                self.dbs.shared(identity).execute("SELECT 1 FROM reshard_keys LIMIT 1")
            except psycopg.Error as exc:
                raise ReshardError(f"{identity} is not a migrated shard database ({exc}); run the CLI command") from exc

    # ---- map ----------------------------------------------------------------------------------
    def _write_map(self, shard_map: ShardMap) -> ShardMap:
        """Records ``shard_map`` on every database of both ends, shard 0 (the authority) last."""
        databases = shard_map.all_databases()
        for identity in [*databases[1:], databases[0]]:
            self.dbs.shared(identity).execute(
                "INSERT INTO shard_map (version, databases, state, other_databases) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, databases = EXCLUDED.databases,"
                " state = EXCLUDED.state, other_databases = EXCLUDED.other_databases, updated_at = now()",
                (
                    shard_map.version,
                    list(shard_map.databases),
                    shard_map.state,
                    list(shard_map.other_databases) or None,
                ),
            )
        self.progress(f"map recorded: {shard_map}", 0, 0)
        return shard_map

    def _fence(self, databases: Iterable[str], *, on: bool) -> None:
        for identity in databases:
            with self.dbs.new(identity) as conn:
                conn.execute("SET LOCAL lock_timeout = '30s'")
                for table in SHARDED_TABLES:
                    conn.execute(_guard(table, on=on))

    # ---- register -----------------------------------------------------------------------------
    def _register_and_start(self, recorded: ShardMap, old: tuple[str, ...], new: tuple[str, ...]) -> ShardMap:
        tables = sql.SQL(", ").join(sql.Identifier(table.name) for table in SHARDED_TABLES)
        lockers: list[psycopg.Connection] = []
        try:
            for identity in old:
                conn = self.dbs.new(identity)
                lockers.append(conn)
                conn.execute("SET LOCAL lock_timeout = '30s'")
                conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tables))
                for table in SHARDED_TABLES:  # the write fence, live when the pause ends
                    conn.execute(_guard(table, on=True))
            registered = sum(self._register(index, identity, new) for index, identity in enumerate(old))
            self.progress("register", registered, registered)
            moving = self._write_map(ShardMap(recorded.version + 1, old, "moving", new))
            time.sleep(self.routers_see_map_s)  # writes stay paused until every router routes by "moving"
            for conn in lockers:
                conn.commit()
            return moving
        finally:
            for conn in lockers:
                conn.close()

    def _register(self, index: int, identity: str, new: tuple[str, ...]) -> int:
        """Registers as ``pending`` the keys on old shard ``index`` whose shard changes; returns how many were new."""
        conn = self.dbs.shared(identity)
        union = sql.SQL(" UNION ").join(
            sql.SQL("SELECT {} AS k FROM {}").format(sql.SQL(table.key), sql.Identifier(table.name))
            for table in SHARDED_TABLES
        )
        keys = [row[0] for row in conn.execute(sql.SQL("SELECT k FROM ({}) s WHERE k IS NOT NULL").format(union))]
        moving = [(key, target) for key in keys if new[target := shard_for(key, len(new))] != identity]
        inserted = 0
        for start in range(0, len(moving), 5000):
            part = moving[start : start + 5000]
            inserted += conn.execute(
                "INSERT INTO reshard_keys (key, target, state) SELECT k, t, 'pending'"
                " FROM unnest(%s::text[], %s::int[]) AS u(k, t) ON CONFLICT (key) DO NOTHING",
                ([key for key, _ in part], [target for _, target in part]),
            ).rowcount
        return inserted

    def _register_stragglers(self, old: tuple[str, ...], new: tuple[str, ...]) -> int:
        found = sum(self._register(index, identity, new) for index, identity in enumerate(old))
        if found:
            self.progress("stragglers registered", found, found)
        return found

    # ---- copy ---------------------------------------------------------------------------------
    def _copy_all(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        total = sum(self._count(identity, "pending") for identity in old)
        done = 0
        self.progress("copy", done, total)
        for identity in old:
            conn = self.dbs.shared(identity)
            while True:
                batch = conn.execute(
                    "SELECT key, target FROM reshard_keys WHERE state = 'pending' ORDER BY key LIMIT %s",
                    (self.batch_size,),
                ).fetchall()
                if not batch:
                    break
                for target, keys in _group(batch).items():
                    done += self._move_batch(identity, new[target], keys)
                self.progress("copy", done, total)
                if self.batch_pause_s:
                    time.sleep(self.batch_pause_s)

    def _count(self, identity: str, state: str) -> int:
        row = self.dbs.shared(identity).execute("SELECT count(*) FROM reshard_keys WHERE state = %s", (state,))
        return int(row.fetchone()[0])  # type: ignore[index]

    def _move_batch(self, source: str, target: str, keys: list[str]) -> int:
        """Copies the rows of ``keys`` in one target transaction, verified, then marks them moved."""
        with self.dbs.new(source) as src, self.dbs.new(target) as dst:
            locked = [
                row[0]
                for row in src.execute(
                    "SELECT key FROM reshard_keys WHERE key = ANY(%s) AND state = 'pending' ORDER BY key FOR UPDATE",
                    (keys,),
                )
            ]
            dst.execute("SET LOCAL lakehouse.reshard_mover = 'on'")
            for table in SHARDED_TABLES:
                rows = [
                    row[0]
                    for row in src.execute(
                        sql.SQL("SELECT t::text FROM {} t WHERE {} = ANY(%s)").format(
                            sql.Identifier(table.name), sql.SQL(table.key)
                        ),
                        (locked,),
                    )
                ]
                if rows:
                    dst.execute(self._upsert(dst, table.name), (rows,))
                before = src.execute(_checksum_query(table), (locked,)).fetchone()
                after = dst.execute(_checksum_query(table), (locked,)).fetchone()
                if before != after:
                    raise ReshardError(
                        f"{table.name}: {source} has {before} (rows, checksum) for a batch of {len(locked)} keys,"
                        f" {target} has {after} after the copy; nothing of the batch was committed"
                    )
            dst.commit()
            src.execute("UPDATE reshard_keys SET state = 'moved', updated_at = now() WHERE key = ANY(%s)", (locked,))
            src.commit()
        return len(locked)

    def _upsert(self, conn: psycopg.Connection, table: str) -> sql.Composed:
        columns, keys = self._table_columns(conn, table)
        others = [column for column in columns if column not in keys]
        action = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in others
                )
            )
            if others
            else sql.SQL("DO NOTHING")
        )
        return sql.SQL(
            "INSERT INTO {t} SELECT (r::{t}).* FROM unnest(%s::text[]) AS u(r) ON CONFLICT ({k}) {a}"
        ).format(t=sql.Identifier(table), k=sql.SQL(", ").join(map(sql.Identifier, keys)), a=action)

    def _table_columns(self, conn: psycopg.Connection, table: str) -> tuple[list[str], list[str]]:
        if table not in self._columns:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                    " AND NOT attisdropped ORDER BY attnum",
                    (table,),
                )
            ]
            keys = [
                row[0]
                for row in conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                    " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (table,),
                )
            ]
            self._columns[table] = (columns, keys)
        return self._columns[table]

    # ---- verify -------------------------------------------------------------------------------
    def _verify(self, old: tuple[str, ...], new: tuple[str, ...], report: ReshardReport) -> None:
        """Every moved row is on its new shard: by primary key, with the same content or updated there
        since (counted); a missing row stops the reshard before the switch."""
        figures = {table.name: TableFigures() for table in SHARDED_TABLES}
        for identity in old:
            moved = self.dbs.shared(identity).execute("SELECT key, target FROM reshard_keys WHERE state = 'moved'")
            for target, keys in _group(moved.fetchall()).items():
                report.keys_moved += len(keys)
                for start in range(0, len(keys), 2000):
                    part = keys[start : start + 2000]
                    for table in SHARDED_TABLES:
                        self._verify_part(identity, new[target], table, part, figures[table.name])
        report.tables = figures
        self.progress("verified", report.keys_moved, report.keys_moved)

    def _verify_part(self, source: str, target: str, table: ShardedTable, keys: list[str], out: TableFigures) -> None:
        pk = self._table_columns(self.dbs.shared(target), table.name)[1]
        query = sql.SQL(
            "SELECT ({pk})::text, md5(t::text), ('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint"
            " FROM {t} t WHERE {k} = ANY(%s)"
        ).format(
            pk=sql.SQL("row({})").format(sql.SQL(", ").join(map(sql.Identifier, pk))),
            t=sql.Identifier(table.name),
            k=sql.SQL(table.key),
        )
        before = {row[0]: (row[1], row[2]) for row in self.dbs.shared(source).execute(query, (keys,))}
        after = {row[0]: row[1] for row in self.dbs.shared(target).execute(query, (keys,))}
        missing = [key for key in before if key not in after]
        if missing:
            raise ReshardError(
                f"{table.name}: {len(missing)} moved row(s) are not on {target} (e.g. {missing[0]}); rerun the reshard"
            )
        out.rows += len(before)
        out.checksum += sum(checksum for _, checksum in before.values())
        out.updated_since_copy += sum(1 for key, (digest, _) in before.items() if after[key] != digest)

    # ---- cleanup ------------------------------------------------------------------------------
    def _cleanup(self, recorded: ShardMap, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        time.sleep(self.routers_see_map_s)  # no router still sends a moved key to its old shard
        for identity in old:
            with self.dbs.new(identity) as conn:
                conn.execute("SET LOCAL lakehouse.reshard_mover = 'on'")
                deleted = 0
                for table in reversed(SHARDED_TABLES):
                    deleted += conn.execute(
                        sql.SQL(
                            "DELETE FROM {} WHERE {} IN (SELECT key FROM reshard_keys WHERE state = 'moved')"
                        ).format(sql.Identifier(table.name), sql.SQL(table.key))
                    ).rowcount
                conn.execute("DELETE FROM reshard_keys WHERE state = 'moved'")
                for table in SHARDED_TABLES:
                    conn.execute(_guard(table, on=False))
            self.progress(f"cleanup {identity}: {deleted} old row(s) deleted", 0, 0)
        self._write_map(ShardMap(recorded.version + 1, new, "stable", ()))
        retired = [identity for identity in old if identity not in new]
        if retired:
            for identity in retired:
                self.dbs.shared(identity).execute("DELETE FROM shard_map")


def _group(rows: Iterable[tuple[str, int]]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for key, target in rows:
        groups.setdefault(target, []).append(key)
    return groups
