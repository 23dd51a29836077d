"""Quizzes and flashcards of every indexed document version that has none from the current
generator.

Orchestration only: the tasks call ``study.batch``, which reads silver (and the notes in gold),
generates and writes ``gold/quizzes``, ``gold/quiz_items`` and ``gold/flashcards``.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from dags._study_common import DEFAULT_ARGS, PARAMS, SCHEDULE, START

DOC = """\
### Quizzes and flashcards
For each indexed document version without a quiz from the current generator version (or the
document / course in the params; `force` regenerates): multiple-choice and cloze items (4
options, one key, explanation, source chunk and page, difficulty), no two testing the same
fact, distractors from the same document's key terms within a similarity band; flashcards from
key terms and cloze items. Quality (answerability, duplicate rate, distractor similarity) is
logged and stored with the quiz. Keyed by (document, version, generator version): a rerun
writes the same rows.
"""


@dag(
    dag_id="generate_quizzes",
    schedule=SCHEDULE,
    start_date=START,
    catchup=False,
    max_active_runs=2,
    tags=["study", "quiz"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
)
def generate_quizzes() -> None:
    @task
    def find_documents() -> list[dict]:
        from core.settings import Settings
        from study.batch import documents_for_run

        context = get_current_context()
        final = context["ti"].try_number > context["ti"].max_tries
        return documents_for_run(Settings(), "quiz", dict(context["params"]), final_attempt=final)

    @task(pool="study_generation", map_index_template="{{ task.op_kwargs['document']['document_id'] }}")
    def generate(document: dict) -> dict:
        from core.settings import Settings
        from study.batch import generate_for_run

        context = get_current_context()
        # The student's job is failed only when no retry is left.
        final = context["ti"].try_number > context["ti"].max_tries
        return generate_for_run(Settings(), "quiz", document, run_at=context["dag_run"].run_after, final_attempt=final)

    @task
    def check_quality() -> dict:
        """Great Expectations suites of the gold tables just written; a failed expectation fails the run."""
        from core.settings import Settings
        from quality.runner import check_study_outputs

        return check_study_outputs(Settings(), "quiz")

    generate.expand(document=find_documents()) >> check_quality()


generate_quizzes()
