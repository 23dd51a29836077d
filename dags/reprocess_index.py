"""Reprocess from bronze into a new index version, triggered by hand with params.

Orchestration only: the task builds Settings and a Spark session at run time and calls
``lake.reprocess.reprocess`` (the same function as ``lakehouse reprocess``); nothing runs at
import. A retried task resumes the unfinished version (documents already built are skipped).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

DOC = """\
### Reprocess into a new index version
Rebuilds silver and LanceDB for one scope from the raw uploads with the given chunking or
embedding settings into a new index version (`chunks_v<N>`), checks it (rows per document, the
Great Expectations `silver/chunks` suite, recall on the evaluation set when it is in scope) and
switches search to it atomically. Params: exactly one of `course`, `document`, `all`; optional
`chunk_size`, `chunk_overlap`, `embedding_model`, `precision` (default: the live version's);
`force` accepts a lower recall; `gold` (default true) regenerates the scope's notes, quizzes and
cards from the new chunks once the switch is done. A retry resumes the unfinished version.
"""


@dag(
    dag_id="reprocess_index",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["lake", "reprocess"],
    doc_md=DOC,
    params={
        "course": Param(None, type=["null", "string"], description="Every current document of this course"),
        "document": Param(None, type=["null", "string"], description="This document's current version"),
        "all": Param(False, type="boolean", description="Every current document of the lake"),
        "chunk_size": Param(None, type=["null", "integer"], minimum=100, description="Characters per chunk"),
        "chunk_overlap": Param(None, type=["null", "integer"], minimum=0, description="Characters of overlap"),
        "embedding_model": Param(None, type=["null", "string"], description="Model package (needs all)"),
        "precision": Param(
            None,
            type=["null", "string"],
            enum=[None, "auto", "fp32", "bf16", "int8"],
            description="Embedding precision (needs all)",
        ),
        "force": Param(False, type="boolean", description="Switch even if recall is lower than the live version's"),
        "gold": Param(True, type="boolean", description="Regenerate the scope's notes, quizzes and cards afterwards"),
    },
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=2)},
)
def reprocess_index() -> None:
    @task
    def rebuild_check_switch(params: dict | None = None) -> dict:
        from core.settings import Settings
        from lake.reprocess import Scope, reprocess
        from lake.spark import build_spark_session

        p = params or {}
        scope = Scope.of(course=p.get("course"), document=p.get("document"), everything=bool(p.get("all")))
        settings = Settings()
        spark = build_spark_session(settings, "reprocess-dag")
        try:
            result = reprocess(
                spark, settings, scope, chunk_size=p.get("chunk_size"), chunk_overlap=p.get("chunk_overlap"),
                embedding_model=p.get("embedding_model"), precision=p.get("precision"), force=bool(p.get("force")),
                progress=lambda step: print(f"{step.stage} {step.document_id or ''} {step.pages_done}/"
                                            f"{step.pages_total} {step.message}"),
            )  # fmt: skip
        finally:
            spark.stop()
        for line in result.checks:
            print(f"check: {line}")
        from core.db import ShardedPostgres
        from lake.reprocess import counts_by_course
        from records.documents import DocumentRecords

        db = ShardedPostgres(settings.postgres)
        try:
            records = DocumentRecords(db)
            for course, counts in counts_by_course(result).items():
                records.set_chunk_counts(course, counts)
        finally:
            db.close()
        return {"version": result.version.version, "previous": result.previous.version,
                "documents": result.documents, "built": result.built, "resumed": result.resumed,
                "seconds": round(result.seconds, 1)}  # fmt: skip

    @task
    def regenerate_gold(switched: Any, params: dict | None = None) -> dict:  # switched: the upstream's XCom dict
        """The scope's study material made anew from the switched index (a retry redoes it whole:
        each document's gold rows are replaced on their key)."""
        from datetime import UTC, datetime

        from core.settings import Settings
        from study.batch import regenerate_scope

        p = params or {}
        if not p.get("gold", True):
            print("gold left as it was (param gold=false): it cites the retired version's chunks")
            return {"version": switched["version"], "skipped": True}
        made = regenerate_scope(
            Settings(), course_id=p.get("course"), document_id=p.get("document"), run_at=datetime.now(UTC),
            report=lambda kind, summary: print(f"gold {kind}: {summary}"),
        )  # fmt: skip
        return {"version": switched["version"], **made}

    regenerate_gold(rebuild_check_switch())


reprocess_index()
