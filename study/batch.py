"""The work of the study DAGs' tasks, with its I/O at the edges: which document versions need
material, read one from silver, generate, write gold, report progress on the student's job.

DAG files call these functions and nothing else; each builds nothing at import and takes the
Settings built by the task. A rerun of the same generator version writes the same gold rows
(stable ids, replace-where on the key), so a retried task never doubles anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.jobs import JobReporter, JobState
from core.settings import Settings
from core.shard_map import ShardMapMismatch
from core.task_metrics import task_metrics
from study.models import ChunkText, DocumentText, PageText

log = logging.getLogger("study.batch")
Kind = Literal["notes", "quiz"]


@dataclass(frozen=True)
class DocumentVersion:
    document_id: str
    version: int
    course_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "version": self.version, "course_id": self.course_id}


def indexed_versions(
    settings: Settings, *, course_id: str | None = None, document_id: str | None = None
) -> list[DocumentVersion]:
    """The current indexed document versions in ``silver/documents`` (optionally of one course
    or one document), oldest first."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lake.tables import SILVER_DOCUMENTS, delta_location

    path, options = delta_location(settings, SILVER_DOCUMENTS)
    # is_current is checked after the read: a dataset filter on that boolean skipped files whose
    # rows hold true (delta-rs 1.6 file statistics), so it found nothing.
    wanted = pc.field("status") == "indexed"
    if course_id:
        wanted = wanted & (pc.field("course_id") == course_id)
    if document_id:
        wanted = wanted & (pc.field("document_id") == document_id)
    try:
        table = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    except TableNotFoundError:
        return []
    columns = ["document_id", "version", "course_id", "uploaded_at", "is_current"]
    rows = [r for r in table.to_table(columns=columns, filter=wanted).to_pylist() if r["is_current"]]
    rows.sort(key=lambda r: (r["uploaded_at"], r["document_id"], r["version"]))
    return [DocumentVersion(r["document_id"], r["version"], r["course_id"]) for r in rows]


def pending(
    settings: Settings,
    kind: Kind,
    *,
    generator_version: str,
    course_id: str | None = None,
    document_id: str | None = None,
    force: bool = False,
) -> list[DocumentVersion]:
    """Indexed versions without material of this kind from this generator version (all of the
    scope when ``force``: a regeneration)."""
    from lake import gold

    table = gold.GOLD_NOTES if kind == "notes" else gold.GOLD_QUIZZES
    versions = indexed_versions(settings, course_id=course_id, document_id=document_id)
    if force:
        return versions
    return [
        v
        for v in versions
        if not gold.read_rows(
            settings, table, document_id=v.document_id, version=v.version, generator_version=generator_version
        )
    ]


def documents_for_run(settings: Settings, kind: Kind, params: dict[str, Any], *, final_attempt: bool) -> list[dict]:
    """The documents a DAG run maps its generation task over (params: course_id, document_id,
    job_id, force). A run with nothing to do finishes the student's job; one that cannot look
    fails it with the reason when no retry is left."""
    job_id = params.get("job_id")
    try:
        found = pending(
            settings,
            kind,
            generator_version=generator_version(settings),
            course_id=params.get("course_id"),
            document_id=params.get("document_id"),
            force=bool(params.get("force")),
        )
    except Exception as exc:
        if job_id and final_attempt:
            JobProgress(settings, job_id).finish(error=f"could not list documents: {type(exc).__name__}: {exc}"[:500])
        raise
    log.info("%d document version(s) need %s", len(found), kind)
    if not found and job_id:
        JobProgress(settings, job_id).finish()  # it exists already: nothing to wait for
    return [{**v.as_dict(), "job_id": job_id, "force": bool(params.get("force"))} for v in found]


def load_document(settings: Settings, target: DocumentVersion) -> DocumentText:
    """One document version's pages and chunks from silver, as generation reads them."""
    from lake.gold import read_document_text

    data = read_document_text(settings, document_id=target.document_id, version=target.version)
    if not data["pages"]:
        raise LookupError(f"document {target.document_id} v{target.version} has no pages in silver/pages")
    return DocumentText(
        document_id=target.document_id,
        version=target.version,
        course_id=target.course_id,
        pages=[PageText(number=p["page_number"], text=p["text"] or "") for p in data["pages"]],
        chunks=[
            ChunkText(chunk_id=c["chunk_id"], page_start=c["page_start"], page_end=c["page_end"], text=c["text"])
            for c in data["chunks"]
        ],
    )


class JobProgress:
    """Reports units done / total (sections, quiz items) and an ETA on the student's job, live in
    Redis (the notifications WebSocket relays it) and durable in PostgreSQL at start and end."""

    def __init__(self, settings: Settings, job_id: str | None) -> None:
        self.settings = settings
        self.job_id = job_id
        self.started = time.monotonic()
        self._reporter: JobReporter | None = None
        self._db: Any = None

    def _live(self) -> JobReporter | None:
        if self.job_id is None:
            return None
        if self._reporter is None:
            from core.redis import redis_client

            self._reporter = JobReporter(redis_client(self.settings.redis))
        return self._reporter

    def _durable(self, state: JobState) -> None:
        from core.db import open_checked
        from records.documents import DocumentRecords

        if self._db is None:
            self._db = open_checked(self.settings.postgres)
        DocumentRecords(self._db).save_job(state)

    def update(self, done: int, total: int) -> None:
        reporter = self._live()
        if reporter is None or self.job_id is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (total - done) if done else None
        try:
            state = reporter.update(self.job_id, status="running", pages_done=done, pages_total=total, eta_s=eta)
            if state is not None and done == 0:
                self._durable(state)
        except ShardMapMismatch:
            raise  # the task stops at its first durable write rather than write on the wrong shard
        except Exception as exc:  # noqa: BLE001 - progress is best effort; the outcome is recorded below
            log.warning("progress of job %s not reported: %s", self.job_id, exc)

    def finish(self, *, error: str | None = None) -> None:
        reporter = self._live()
        if reporter is None or self.job_id is None:
            return
        changes: dict[str, Any] = {"status": "failed" if error else "succeeded", "error": error, "eta_s": 0.0}
        state = reporter.update(self.job_id, **changes)
        if state is not None:
            self._durable(state)
        if self._db is not None:
            self._db.close()


class _LazyEmbedder:
    """The bundled embedder, loaded on first use: knowing a generator's version needs no model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedder: Any = None

    def encode(self, texts: Any) -> Any:
        if self._embedder is None:
            from processing.embedding import get_embedder

            self._embedder = get_embedder(self.settings.embedding)
        return self._embedder.encode(texts)


def quality_thresholds(settings: Settings) -> Any:
    """The study settings' thresholds as the quality functions take them."""
    from study.quality import QualityThresholds

    study = settings.study
    return QualityThresholds(
        min_citation_precision=study.min_citation_precision,
        min_section_coverage=study.min_section_coverage,
        min_answerability=study.min_answerability,
        max_duplicate_rate=study.max_duplicate_rate,
        distractor_min_similarity=study.distractor_min_similarity,
        distractor_max_similarity=study.distractor_max_similarity,
    )


def invalidate_api_cache(settings: Settings, target: DocumentVersion, *, tables: list[str]) -> None:
    """Deletes the API's cached gold reads of this document version (and of its course's
    cards), so students see new material at once, not after the cache's TTL."""
    from core.keys import course_cards_key, gold_rows_key
    from core.redis import redis_client

    keys = [gold_rows_key(t, target.document_id, target.version) for t in tables]
    keys.append(course_cards_key(target.course_id))
    try:
        client = redis_client(settings.redis)
        for key in keys:
            client.delete(settings.redis.key_prefix + key)
        client.close()
    except Exception as exc:  # noqa: BLE001 - the entries expire by TTL; the material is written
        log.warning("API cache of %s not invalidated: %s", target.document_id, exc)


def _generator(settings: Settings) -> Any:
    from study.generators import build_generator

    return build_generator(settings.llm, _LazyEmbedder(settings))


def generator_version(settings: Settings) -> str:
    """The version of the generator Settings choose (part of every gold key)."""
    return str(_generator(settings).version)


def _full_text_search(settings: Settings, course_id: str) -> Callable[[str], list[str]]:
    """Chunk ids the course's full-text index returns for a question (for answerability)."""
    from lake import vectors
    from lake.search import full_text

    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb, create=False)
    where = f"course_id = {vectors.quote(course_id)}"

    def search(question: str) -> list[str]:
        return [hit["chunk_id"] for hit in full_text(table, question, where, 5)]

    return search


def _already_made(settings: Settings, table: str, target: DocumentVersion, generator_version: str) -> bool:
    from lake import gold

    return bool(
        gold.read_rows(
            settings, table, document_id=target.document_id, version=target.version, generator_version=generator_version
        )
    )


def run_notes(
    settings: Settings,
    target: DocumentVersion,
    *,
    run_at: datetime,
    job_id: str | None = None,
    force: bool = False,
    final_attempt: bool = True,
) -> dict[str, Any]:
    """Generates and writes the notes of one document version (unless another run made them
    since this one looked: runs overlap, e.g. a student's and the schedule's); returns a summary."""
    from lake import gold
    from study.notes import generate_notes

    progress = JobProgress(settings, job_id)
    started = time.monotonic()
    try:
        generator = _generator(settings)
        if not force and _already_made(settings, gold.GOLD_NOTES, target, generator.version):
            progress.finish()
            return {**target.as_dict(), "skipped": "notes of this generator version exist"}
        doc = load_document(settings, target)
        notes = generate_notes(
            doc,
            generator=generator,
            section_pages=settings.study.section_pages,
            progress=progress.update,
            thresholds=quality_thresholds(settings),
        )
        gold.replace_rows(
            settings,
            gold.GOLD_NOTES,
            [gold.notes_row(notes, run_at=run_at)],
            document_id=target.document_id,
            version=target.version,
            generator_version=notes.generator_version,
        )
    except Exception as exc:
        if final_attempt:  # a retry may still succeed: the student sees the failure only at the end
            progress.finish(error=f"notes generation failed: {type(exc).__name__}: {exc}"[:500])
        raise
    invalidate_api_cache(settings, target, tables=[gold.GOLD_NOTES])
    progress.finish()
    quality = notes.quality
    return {
        **target.as_dict(),
        "generator": notes.generator,
        "generator_version": notes.generator_version,
        "pages": len(doc.pages),
        "sections": quality.sections,
        "sections_covered": quality.sections_covered,
        "citation_precision": round(quality.citation_precision, 4),
        "section_coverage": round(quality.section_coverage, 4),
        "flagged": quality.flagged,
        "reasons": quality.reasons,
        "tokens": dict(getattr(generator, "usage", {})),
        "seconds": round(time.monotonic() - started, 2),
    }


def run_quiz(
    settings: Settings,
    target: DocumentVersion,
    *,
    run_at: datetime,
    job_id: str | None = None,
    items: int | None = None,
    force: bool = False,
    final_attempt: bool = True,
) -> dict[str, Any]:
    """Generates and writes the quiz and flashcards of one document version (from its notes,
    generated first when missing); returns a summary for the log."""
    from lake import gold
    from processing.embedding import get_embedder
    from study.cards import flashcards
    from study.models import Notes
    from study.notes import generate_notes
    from study.quiz import generate_quiz

    progress = JobProgress(settings, job_id)
    started = time.monotonic()
    try:
        generator = _generator(settings)
        if not force and _already_made(settings, gold.GOLD_QUIZZES, target, generator.version):
            progress.finish()
            return {**target.as_dict(), "skipped": "a quiz of this generator version exists"}
        doc = load_document(settings, target)
        stored = gold.read_rows(
            settings,
            gold.GOLD_NOTES,
            document_id=target.document_id,
            version=target.version,
            generator_version=generator.version,
        )
        notes = Notes.model_validate_json(stored[0]["payload"]) if stored else generate_notes(doc, generator=generator)
        quiz = generate_quiz(
            doc,
            notes,
            generator=generator,
            embedder=get_embedder(settings.embedding),
            items=items or settings.study.quiz_items,
            progress=progress.update,
            search=_full_text_search(settings, target.course_id),
            thresholds=quality_thresholds(settings),
        )
        head, item_rows = gold.quiz_rows(quiz, run_at=run_at)
        version_key: dict[str, Any] = {
            "document_id": target.document_id,
            "version": target.version,
            "generator_version": quiz.generator_version,
        }
        cards = flashcards(notes, quiz)
        card_rows = gold.card_rows(
            cards, generator=quiz.generator, generator_version=quiz.generator_version, run_at=run_at
        )
        # The quiz header is written last: its presence means "done" (``pending`` and the skip
        # above), so a try killed before it is redone whole, each write replacing its own rows.
        gold.replace_rows(settings, gold.GOLD_QUIZ_ITEMS, item_rows, **version_key)
        gold.replace_rows(settings, gold.GOLD_FLASHCARDS, card_rows, **version_key)
        gold.replace_rows(settings, gold.GOLD_QUIZZES, [head], **version_key)
    except Exception as exc:
        if final_attempt:
            progress.finish(error=f"quiz generation failed: {type(exc).__name__}: {exc}"[:500])
        raise
    invalidate_api_cache(settings, target, tables=[gold.GOLD_QUIZZES, gold.GOLD_QUIZ_ITEMS, gold.GOLD_NOTES])
    progress.finish()
    quality = quiz.quality
    return {
        **target.as_dict(),
        "generator": quiz.generator,
        "generator_version": quiz.generator_version,
        "items": quality.items,
        "answerability": round(quality.answerability, 4),
        "duplicate_rate": round(quality.duplicate_rate, 4),
        "distractor_similarity": [
            round(quality.distractor_similarity_min, 3),
            round(quality.distractor_similarity_max, 3),
        ],
        "flashcards": len(cards),
        "flagged": quality.flagged,
        "reasons": quality.reasons,
        "seconds": round(time.monotonic() - started, 2),
    }


# The DAG and mapped task that run each kind (dags/summarise_documents.py, dags/generate_quizzes.py).
TASK_OF_KIND = {"notes": ("summarise_documents", "summarise"), "quiz": ("generate_quizzes", "generate")}


def generate_for_run(
    settings: Settings, kind: Kind, document: dict[str, Any], *, run_at: datetime, final_attempt: bool
) -> dict[str, Any]:
    """The mapped task of both study DAGs: one entry of ``documents_for_run`` generated."""
    target = DocumentVersion(document["document_id"], document["version"], document["course_id"])
    run = run_notes if kind == "notes" else run_quiz
    dag, task = TASK_OF_KIND[kind]
    with task_metrics(settings.stack.state_dir, dag=dag, task=task) as metrics:
        summary = run(
            settings,
            target,
            run_at=run_at,
            job_id=document.get("job_id"),
            force=bool(document.get("force", False)),
            final_attempt=final_attempt,
        )
        # gold/notes holds one row per document version; gold/quiz_items one per item.
        metrics.rows = 0 if "skipped" in summary else int(summary.get("items", 1))
    log.info("%s: %s", kind, summary)
    return summary


def regenerate_scope(
    settings: Settings,
    *,
    course_id: str | None = None,
    document_id: str | None = None,
    run_at: datetime,
    report: Callable[[str, dict[str, Any]], None] = lambda kind, summary: None,
) -> dict[str, int]:
    """Notes, then quizzes with their flashcards, of a scope's current versions made anew (both
    None: every course). After a reprocess switched the index the old material cites chunks of
    the retired version, so this runs with ``force``; returns how many versions each kind covered."""
    version = generator_version(settings)
    made: dict[str, int] = {}
    kinds: tuple[tuple[Kind, Callable[..., dict[str, Any]]], ...] = (("notes", run_notes), ("quiz", run_quiz))
    for kind, run in kinds:
        targets = pending(
            settings, kind, generator_version=version, course_id=course_id, document_id=document_id, force=True
        )
        for target in targets:
            report(kind, run(settings, target, run_at=run_at, force=True))
        made[kind] = len(targets)
    return made
