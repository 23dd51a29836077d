"""Reprocessing from bronze and the raw zone into a new index version, switched when checked.

``reprocess(spark, settings, scope, ...)`` rebuilds the chunks of a scope (one document, one
course, or everything) from the raw uploads that ``silver/documents`` (the stream's record of
bronze's upload events) lists as current and indexed, with the ingestion's pure transforms:
``processing.pdf`` extraction, ``processing.chunking.chunk_pages``, ``processing.embedding``,
and ``lake.tables``' row builders. Every run builds a new index version (``lake.index_versions``)
beside the live one:

1. the version is registered (``building``) with its chunking and embedding settings (the live
   version's unless overridden) and its LanceDB table ``chunks_v<N>`` created; the live table's
   rows outside the scope are copied in;
2. each document of the scope (smallest first) is read, extracted, chunked and embedded; its
   chunks go to the staging Delta table ``staging/chunks_v<N>`` and its pages to
   ``silver/pages`` (insert-only), then to the new LanceDB table in one ``merge_insert``. A
   document with rows in the new table is done: a rerun after a crash skips it, and a document
   cut off mid-way is redone on the same chunk ids (no duplicate, nothing missing);
3. documents indexed or replaced meanwhile are caught up, the indexes built, then the checks:
   rows per document equal in staging and LanceDB and none missing, no duplicate chunk id, the
   rows outside the scope equal the live table's, the Great Expectations ``silver/chunks`` suite
   on the staged rows, and recall on the retrieval evaluation set not lower than the live
   version's (unless ``force``), when an evaluator is given; -> ``checked``;
4. the switch: ``silver/chunks`` rows of the scope replaced by the staged ones (one MERGE),
   ``silver/documents`` chunk counts updated, then the registry's one-commit switch. Search
   reads the registry, so it never sees a half-built table;
5. the handover (``lake.reprocess_handover``): what the stream wrote into the old table after
   the catch-up is copied into the new one, then the old version is ``retired``.

A rerun of the same command resumes a version that is ``building`` or ``checked``, and first
finishes a handover a crash cut off.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from core.settings import Settings
from lake import index_versions, reprocess_checks, reprocess_handover, tables
from lake.index_versions import IndexVersion
from lake.reprocess_checks import RecallEvaluator, ReprocessCheckFailed, lance_counts

__all__ = ["ReprocessCheckFailed", "ReprocessError", "Scope", "reprocess"]

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
EMBED_STEP = 256  # chunks per encode call: progress granularity
EXTRACT_STEP = 50  # pages per extract_pages call


class ReprocessError(RuntimeError):
    """The reprocess cannot start or go on (a clear reason, exit 2)."""


@dataclass(frozen=True)
class Scope:
    kind: Literal["all", "course", "document"]
    id: str | None = None

    @classmethod
    def of(cls, *, course: str | None = None, document: str | None = None, everything: bool = False) -> Scope:
        given = [name for name, value in (("--course", course), ("--document", document)) if value]
        if everything:
            given.append("--all")
        if len(given) != 1:
            raise ReprocessError(
                f"say what to reprocess: exactly one of --course ID, --document ID, --all (got {given or 'none'})"
            )
        if course:
            return cls("course", course)
        return cls("document", document) if document else cls("all")

    @property
    def label(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.id}"

    def lance_filter(self, *, inside: bool) -> str | None:
        """The LanceDB filter of the scope's rows (``inside``) or the others' (None: every row)."""
        from lake.vectors import quote

        if self.kind == "all":
            return None if inside else "false"
        column = "course_id" if self.kind == "course" else "document_id"
        return f"{column} {'=' if inside else '<>'} {quote(str(self.id))}"


@dataclass(frozen=True)
class BuildSettings:
    chunk_size: int
    chunk_overlap: int
    embedding_model: str
    precision: str


@dataclass(frozen=True)
class Progress:
    """One step of the run: ``stage`` with the document's pages done (for a progress bar)."""

    stage: str
    document_index: int = 0
    documents: int = 0
    document_id: str | None = None
    pages_done: int = 0
    pages_total: int = 0
    message: str = ""


@dataclass
class ReprocessResult:
    version: IndexVersion
    previous: IndexVersion
    documents: int = 0
    built: int = 0
    resumed: int = 0
    chunks: dict[tuple[str, int], int] = field(default_factory=dict)
    courses: dict[str, str] = field(default_factory=dict)  # document_id -> course_id (scope)
    step_seconds: dict[str, float] = field(default_factory=dict)  # read, extract, chunk, embed, writes
    checks: list[str] = field(default_factory=list)
    handover: reprocess_handover.Handover = field(default_factory=reprocess_handover.Handover)
    seconds: float = 0.0


ReportProgress = Callable[[Progress], None]


def counts_by_course(result: ReprocessResult) -> dict[str, dict[tuple[str, int], int]]:
    """The new chunk counts grouped by course: what PostgreSQL's ``documents`` rows are told
    (``records.documents.DocumentRecords.set_chunk_counts``, by the runtime)."""
    grouped: dict[str, dict[tuple[str, int], int]] = {}
    for (document_id, version), chunks in result.chunks.items():
        grouped.setdefault(result.courses[document_id], {})[(document_id, version)] = chunks
    return grouped


def staging_name(version: int) -> str:
    return f"staging/chunks_v{version}"


def scope_documents(settings: Settings, scope: Scope) -> list[dict[str, Any]]:
    """The current, indexed document versions of the scope (their ``silver/documents`` rows),
    smallest first."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path, options = tables.delta_location(settings, tables.SILVER_DOCUMENTS)
    try:
        dataset = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    except TableNotFoundError:
        return []
    wanted = (pc.field("status") == "indexed") & pc.field("is_current")
    if scope.kind != "all":
        wanted = wanted & (pc.field(f"{scope.kind}_id") == scope.id)
    rows = dataset.to_table(filter=wanted).to_pylist()
    return sorted(rows, key=lambda r: (r["pages"] or 0, r["document_id"], r["version"]))


def resolve_build(
    live: IndexVersion, scope: Scope, *, chunk_size: int | None, chunk_overlap: int | None,
    embedding_model: str | None, precision: str | None,
) -> BuildSettings:  # fmt: skip
    """The live version's settings with the overrides; a new embedding needs the whole index."""
    build = BuildSettings(
        chunk_size=chunk_size or live.chunk_size,
        chunk_overlap=live.chunk_overlap if chunk_overlap is None else chunk_overlap,
        embedding_model=embedding_model or live.embedding_model,
        precision=precision or live.precision,
    )
    if build.chunk_overlap >= build.chunk_size:
        raise ReprocessError(f"--chunk-size {build.chunk_size} must exceed the chunk overlap ({build.chunk_overlap})")
    if scope.kind != "all" and (build.embedding_model, build.precision) != (live.embedding_model, live.precision):
        raise ReprocessError(
            f"a new embedding ({build.embedding_model}, {build.precision}; live: {live.embedding_model}, "
            f"{live.precision}) changes every vector of the index: reprocess --all"
        )
    return build


def pick_version(db: Any, settings: Settings, scope: Scope, build: BuildSettings) -> IndexVersion:
    """The unfinished version of this scope and these settings (resumed), or a new one."""
    key = (build.chunk_size, build.chunk_overlap, build.embedding_model, build.precision)
    for version in index_versions.list_versions(db):
        if version.state not in ("building", "checked"):
            continue
        if version.scope == scope.label and version.build_settings == key:
            return version
        raise ReprocessError(
            f"index version {version.version} ({version.scope}, chunk size {version.chunk_size}) is still "
            f"{version.state}: rerun its reprocess to finish it, or abandon it with "
            f"`lakehouse lake versions --abandon {version.version}`"
        )
    return index_versions.create_version(db, settings, scope=scope.label, **vars(build))


class Rebuilder:
    """Builds one document's rows for a version: raw read, extraction, chunks, embeddings."""

    def __init__(self, settings: Settings, build: BuildSettings) -> None:
        from lake.raw_uploads import RawUploadReader, RetryPolicy

        self.settings = settings
        self.build = build
        self.reader = RawUploadReader(settings.object_store, RetryPolicy.from_settings(settings.ingest))
        self._embedder: Any = None
        self.seconds: dict[str, float] = {}  # per step, summed over documents

    @contextmanager
    def lap(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started

    def embedder(self) -> Any:
        from processing.embedding import get_embedder

        if self._embedder is None:
            embedding = self.settings.embedding.model_copy(
                update={"model_package": self.build.embedding_model, "precision": self.build.precision}
            )
            with self.lap("load_model"):
                self._embedder = get_embedder(embedding)
                self._embedder.encode(["warm-up"])
        return self._embedder

    def rows(self, document: dict[str, Any], report: Callable[[int, int], None]) -> tuple[pa.Table, pa.Table]:
        """(``silver/pages`` rows, ``silver/chunks`` rows) of one document version."""
        import numpy as np

        from core.events import DocumentUploaded
        from processing.chunking import chunk_pages, document_title
        from processing.pdf import PdfRejected, extract_pages, outline, page_count, require_text

        name = f"document {document['document_id']} v{document['version']}"
        with self.lap("read"):
            data = self.reader.read(document["object_uri"])
        if hashlib.sha256(data).hexdigest() != document["sha256"]:
            raise ReprocessError(f"{name}: the raw upload at {document['object_uri']} no longer matches its sha256")
        extractor = self.settings.ingest.extractor
        try:
            with self.lap("extract"):
                total = page_count(data, extractor=extractor)
                pages = []
                for start in range(0, total, EXTRACT_STEP):
                    pages += extract_pages(data, start, min(start + EXTRACT_STEP, total), extractor=extractor)
                    report(len(pages) // 2, total)  # extraction: the first half of the bar
                require_text(pages)
        except PdfRejected as exc:
            raise ReprocessError(f"{name}: {exc.reason}") from exc
        with self.lap("chunk"):
            title, entries = outline(data)  # the section context the stream embeds too; ("", []) if unreadable
            chunks = chunk_pages(
                pages, document_id=document["document_id"], version=document["version"],
                chunk_size=self.build.chunk_size, chunk_overlap=self.build.chunk_overlap,
                title=document_title(title, document["filename"]), outline=entries,
            )  # fmt: skip
        vectors = []
        embedder = self.embedder()
        for start in range(0, len(chunks), EMBED_STEP):
            batch = chunks[start : start + EMBED_STEP]
            with self.lap("embed"):
                vectors.append(embedder.encode([c.embedding_text for c in batch]).astype("float32"))
            report(total // 2 + (batch[-1].page_end * (total - total // 2)) // max(total, 1), total)
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype="float32")
        event = DocumentUploaded.model_construct(  # the row builders read its ids only
            event_id="reprocess", occurred_at=document["uploaded_at"], document_id=document["document_id"],
            version=document["version"], course_id=document["course_id"], job_id=document["job_id"],
            uploaded_by=document["uploaded_by"], object_uri=document["object_uri"], filename=document["filename"],
            size_bytes=document["size_bytes"], sha256=document["sha256"],
        )  # fmt: skip
        page_rows = tables.arrow_rows(tables.SILVER_PAGES, (tables.page_row(event, p) for p in pages))
        chunk_rows = tables.arrow_rows(
            tables.SILVER_CHUNKS, (tables.chunk_row(event, c, matrix[i]) for i, c in enumerate(chunks))
        )
        return page_rows, chunk_rows


def reprocess(
    spark: SparkSession,
    settings: Settings,
    scope: Scope,
    *,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    embedding_model: str | None = None,
    precision: str | None = None,
    force: bool = False,
    evaluate: RecallEvaluator | None = None,
    progress: ReportProgress | None = None,
) -> ReprocessResult:
    """Builds, checks and switches a new index version for ``scope`` (see the module doc)."""
    from lake.vectors import connect

    started = time.perf_counter()
    say = progress or (lambda _p: None)
    db = connect(settings.lancedb)
    for old, done in reprocess_handover.finish_pending(db, settings):  # a run that crashed after its switch
        say(Progress("handover", message=f"version {old.version} retired after a cut-off handover: {done.message}"))
    live = index_versions.live_version(db, settings)
    build = resolve_build(live, scope, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                          embedding_model=embedding_model, precision=precision)  # fmt: skip
    documents = scope_documents(settings, scope)
    if not documents:
        raise ReprocessError(f"nothing to reprocess: no indexed document in scope {scope.label}")
    version = pick_version(db, settings, scope, build)
    result = ReprocessResult(version=version, previous=live, documents=len(documents))
    say(Progress("version", message=f"index version {version.version} ({version.state}) beside live {live.version}"))
    tables.ensure_tables(spark, settings.lake, change_data_feed=settings.ingest.change_data_feed)
    tables.ensure_chunks_table(spark, settings.lake, staging_name(version.version))
    if version.state == "building":
        builder = _Builder(spark, settings, db, version, live, scope, build, say)
        builder.copy_outside_scope()
        builder.build(documents, result)
        documents = builder.catch_up(result)  # uploads indexed or replaced while building
        builder.index()
        result.step_seconds = dict(builder.rebuilder.seconds)
        if evaluate is None:
            embeddings = {live.table_name: (live.embedding_model, live.precision),
                          version.table_name: (build.embedding_model, build.precision)}  # fmt: skip
            evaluate = reprocess_checks.evaluation_recall(settings, documents, embeddings)
        result.checks = reprocess_checks.run_checks(
            settings, db, version, live, documents, staging=staging_name(version.version),
            scope=(scope.label, scope.lance_filter(inside=True), scope.lance_filter(inside=False)),
            evaluate=evaluate, force=force, say=lambda m: say(Progress("check", message=m)),
        )  # fmt: skip
        version = index_versions.mark(db, version, "checked", note="; ".join(result.checks)[:1000])
    say(Progress("switch", message=f"switching search to index version {version.version}"))
    keys = [(d["document_id"], int(d["version"])) for d in documents]
    tables.replace_chunks_from(spark, settings.lake, staging_name(version.version), keys)
    result.chunks = reprocess_checks.staged_counts(settings, staging_name(version.version), keys)
    result.courses = {d["document_id"]: d["course_id"] for d in documents}
    _update_document_counts(spark, settings, documents, result.chunks)
    result.version = index_versions.switch_live(db, version, live, handover=True)  # live: now retiring
    result.handover = reprocess_handover.finish(db, settings, result.version, live)
    say(Progress("handover", message=result.handover.message))
    tables.drop_local_table(settings.lake, staging_name(version.version))  # its rows are in silver/chunks now
    result.seconds = time.perf_counter() - started
    return result


def _update_document_counts(
    spark: SparkSession, settings: Settings, documents: Sequence[dict[str, Any]], counts: dict[tuple[str, int], int]
) -> None:
    """The rebuilt versions' new chunk counts, only these (a version the stream superseded since
    the catch-up stays superseded)."""
    keys = [(d["document_id"], int(d["version"])) for d in documents]
    changed = {
        key: counts.get(key, 0) for key, d in zip(keys, documents, strict=True) if counts.get(key, 0) != d["chunks"]
    }
    tables.set_document_chunks(spark, settings.lake, changed)


class _Builder:
    def __init__(
        self, spark: SparkSession, settings: Settings, db: Any, version: IndexVersion, live: IndexVersion,
        scope: Scope, build: BuildSettings, say: ReportProgress,
    ) -> None:  # fmt: skip
        from lake.vectors import open_chunks

        self.spark, self.settings, self.db, self.scope, self.say = spark, settings, db, scope, say
        self.version, self.live = version, live
        self.table = open_chunks(db, settings.lancedb, name=version.table_name)
        self.rebuilder = Rebuilder(settings, build)

    def copy_outside_scope(self) -> None:
        """The live table's rows outside the scope, upserted (a rerun rewrites the same ids)."""
        from lake.vectors import open_chunks, upsert_chunks

        outside = self.scope.lance_filter(inside=False)
        if outside is None or outside == "false":
            return
        try:
            live = open_chunks(self.db, self.settings.lancedb, create=False, name=self.live.table_name)
        except (FileNotFoundError, ValueError):
            return
        rows = live.search().where(outside).limit(None).to_arrow()
        self.say(
            Progress(
                "copy",
                message=f"{rows.num_rows} chunks outside {self.scope.label} copied from version {self.live.version}",
            )
        )
        upsert_chunks(self.table, rows.select(self.table.schema.names).cast(self.table.schema))

    def build(self, documents: Sequence[dict[str, Any]], result: ReprocessResult) -> None:
        done = lance_counts(self.table, self.scope.lance_filter(inside=True))
        for index, document in enumerate(documents, start=1):
            key = (document["document_id"], int(document["version"]))
            pages_total = int(document["pages"] or 0)
            if done.get(key):
                result.resumed += 1
                self.say(Progress("skip", index, len(documents), key[0], pages_total, pages_total, "already built"))
                continue
            self.build_one(document, index, len(documents))
            result.built += 1

    def build_one(self, document: dict[str, Any], index: int = 0, documents: int = 0) -> None:
        from lake.vectors import from_silver_chunks, upsert_chunks

        document_id = document["document_id"]

        def report(done: int, total: int) -> None:
            self.say(Progress("document", index, documents, document_id, done, total))

        pages, chunks = self.rebuilder.rows(document, report)
        ids = [document_id]
        staging = staging_name(self.version.version)
        frame = self.spark.createDataFrame
        with self.rebuilder.lap("write_delta"):
            tables.insert_new(self.spark, self.settings.lake, staging, frame(chunks), "chunk_id", document_ids=ids)
            tables.insert_new(
                self.spark, self.settings.lake, tables.SILVER_PAGES, frame(pages), "page_id", document_ids=ids
            )
        with self.rebuilder.lap("write_lancedb"):
            upsert_chunks(self.table, from_silver_chunks(chunks))  # last: rows here mean the document is done
        total = int(document["pages"] or pages.num_rows)
        self.say(Progress("document", index, documents, document_id, total, total, f"{chunks.num_rows} chunks"))

    def catch_up(self, result: ReprocessResult) -> list[dict[str, Any]]:
        """Builds documents indexed during the build and drops versions replaced during it."""
        from lake.vectors import quote

        documents = scope_documents(self.settings, self.scope)
        current = {(d["document_id"], int(d["version"])) for d in documents}
        built = lance_counts(self.table, self.scope.lance_filter(inside=True))
        for key in sorted(set(built) - current):
            self.table.delete(f"document_id = {quote(key[0])} AND version = {key[1]}")
        for document in documents:
            if (document["document_id"], int(document["version"])) not in built:
                self.build_one(document)
                result.built += 1
        result.documents = len(documents)
        return documents

    def index(self) -> None:
        from lake.vectors import ensure_course_index, ensure_fts_index, ensure_vector_index, refresh_indexes

        self.say(Progress("index", message=f"indexing {self.version.table_name}"))
        ensure_fts_index(self.table)
        ensure_vector_index(self.table, self.settings.lancedb)
        ensure_course_index(self.table)
        refresh_indexes(self.table, self.settings.lancedb)
