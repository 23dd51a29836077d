"""AI notes of every indexed document version that has none from the current generator.

Orchestration only: the tasks call ``study.batch``, which reads silver, generates (offline
generator or an OpenAI-compatible LLM, chosen by Settings) and writes ``gold/notes``.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from dags._study_common import DEFAULT_ARGS, PARAMS, SCHEDULE, START

DOC = """\
### AI notes with page citations
For each indexed document version without notes from the current generator version (or the one
document / course given in the params; `force` regenerates): section notes (PDF outline or page
windows), then a document overview, then key terms with definitions — every sentence with the
page(s) it comes from. Written to `gold/notes` keyed by (document, version, generator version):
a rerun writes the same rows. Each mapped task logs the quality scores (citation precision,
section coverage) and reports progress on the student's job when one asked for it.
"""


@dag(
    dag_id="summarise_documents",
    schedule=SCHEDULE,
    start_date=START,
    catchup=False,
    max_active_runs=2,
    tags=["study", "notes"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
)
def summarise_documents() -> None:
    @task
    def find_documents() -> list[dict]:
        from core.settings import Settings
        from study.batch import documents_for_run

        context = get_current_context()
        final = context["ti"].try_number > context["ti"].max_tries
        return documents_for_run(Settings(), "notes", dict(context["params"]), final_attempt=final)

    @task(pool="study_generation", map_index_template="{{ task.op_kwargs['document']['document_id'] }}")
    def summarise(document: dict) -> dict:
        from core.settings import Settings
        from study.batch import generate_for_run

        context = get_current_context()
        # The student's job is failed only when no retry is left.
        final = context["ti"].try_number > context["ti"].max_tries
        return generate_for_run(Settings(), "notes", document, run_at=context["dag_run"].run_after, final_attempt=final)

    @task
    def check_quality() -> dict:
        """Great Expectations suites of the gold tables just written; a failed expectation fails the run."""
        from core.settings import Settings
        from quality.runner import check_study_outputs

        return check_study_outputs(Settings(), "notes")

    summarise.expand(document=find_documents()) >> check_quality()


summarise_documents()
