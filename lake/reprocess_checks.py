"""The checks a reprocessed index version passes before it may go live (``lake.reprocess``).

- rows per document: every document version of the scope has chunks, as many in the new
  LanceDB table as in the staging table; no chunk id twice;
- outside the scope: the new table holds exactly the live table's rows (same ids);
- the Great Expectations ``silver/chunks`` suite (``quality/``) on the staged rows;
- recall on the retrieval evaluation set not lower than the live version's, when the runtime
  gives an evaluator (the set's documents are in the scope); ``force`` accepts a lower one.

A failed check raises ``ReprocessCheckFailed`` naming what failed; the version stays
``building`` (not served) and a rerun checks again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings
    from lake.index_versions import IndexVersion

RecallEvaluator = Callable[[str], float]  # table name -> recall on the evaluation set


class ReprocessCheckFailed(RuntimeError):
    """The new version was built but failed a check: it is not switched (exit 1)."""


def lance_counts(table: Any, where: str | None) -> dict[tuple[str, int], int]:
    """Chunks per (document_id, version) of a LanceDB table, among the rows ``where`` selects."""
    query = table.search().select(["document_id", "version"]).limit(None)
    rows = (query.where(where) if where else query).to_arrow()
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by(["document_id", "version"]).aggregate([("document_id", "count")])
    columns = (grouped[c].to_pylist() for c in ("document_id", "version", "document_id_count"))
    return {(d, int(v)): int(n) for d, v, n in zip(*columns, strict=True)}


def staged_counts(settings: Settings, staging: str, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Chunks per (document_id, version) in the staging table, for ``keys`` only."""
    from quality.sources import read_delta

    table = read_delta(settings, staging)
    wanted = set(keys)
    counts = dict.fromkeys(wanted, 0)
    if table is None:
        return counts
    for document_id, version in zip(table["document_id"].to_pylist(), table["version"].to_pylist(), strict=True):
        if (document_id, int(version)) in wanted:
            counts[(document_id, int(version))] += 1
    return counts


def _staged_frame(settings: Settings, staging: str, keys: set[tuple[str, int]]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    from quality.sources import list_as_length, read_delta, text_as_length

    table = read_delta(settings, staging)
    if table is None:
        return None
    mask = pc.is_in(
        pc.binary_join_element_wise(table["document_id"], pc.cast(table["version"], "string"), ":"),
        value_set=pa.array(sorted(f"{d}:{v}" for d, v in keys)),
    )
    return list_as_length(text_as_length(table.filter(mask)), "embedding").to_pandas()


def run_checks(
    settings: Settings,
    db: Any,
    version: IndexVersion,
    live: IndexVersion,
    documents: Sequence[dict[str, Any]],
    *,
    scope: tuple[str, str | None, str | None],
    staging: str,
    evaluate: RecallEvaluator | None,
    force: bool,
    say: Callable[[str], None],
) -> list[str]:
    """Runs the checks; returns one line per check passed (or skipped, with why). ``scope`` is
    (label, LanceDB filter of its rows, filter of the others' rows)."""
    from lake.vectors import open_chunks

    label, inside, outside = scope
    new = open_chunks(db, settings.lancedb, create=False, name=version.table_name)
    keys = [(d["document_id"], int(d["version"])) for d in documents]
    passed: list[str] = []

    staged = staged_counts(settings, staging, keys)
    built = lance_counts(new, inside)
    wrong = [f"{d} v{v}: staged {staged[(d, v)]}, LanceDB {built.get((d, v), 0)}" for d, v in keys
             if staged[(d, v)] == 0 or staged[(d, v)] != built.get((d, v), 0)]  # fmt: skip
    extra = sorted(set(built) - set(keys))
    if wrong or extra:
        raise ReprocessCheckFailed(f"rows per document differ: {wrong[:10]}; not in scope: {extra[:10]}")
    rows = new.count_rows()
    ids = new.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
    if len(set(ids.to_pylist())) != rows:
        raise ReprocessCheckFailed(
            f"duplicate chunk ids in {version.table_name}: {rows} rows, {len(set(ids.to_pylist()))} ids"
        )
    passed.append(f"rows per document: {len(keys)} document(s), {sum(staged.values())} chunks, no duplicate")
    say(passed[-1])

    if outside not in (None, "false"):
        old = open_chunks(db, settings.lancedb, create=False, name=live.table_name)
        mine = set(new.search().where(outside).select(["chunk_id"]).limit(None).to_arrow()["chunk_id"].to_pylist())
        theirs = set(old.search().where(outside).select(["chunk_id"]).limit(None).to_arrow()["chunk_id"].to_pylist())
        if mine != theirs:
            raise ReprocessCheckFailed(
                f"rows outside {label} differ from version {live.version}: "
                f"{len(theirs - mine)} missing, {len(mine - theirs)} extra"
            )
        passed.append(f"outside {label}: the {len(mine)} chunks of version {live.version}")
        say(passed[-1])

    passed.append(_quality(settings, staging, set(keys)))
    say(passed[-1])

    if evaluate is None:
        passed.append(
            "recall: skipped, the retrieval evaluation corpus (bench/retrieval, documents eval-*) is not in "
            f"scope {label}"
        )
    else:
        before, after = evaluate(live.table_name), evaluate(version.table_name)
        line = f"recall@5 on the evaluation set: {after:.3f} (live version {live.version}: {before:.3f})"
        if after < before and not force:
            raise ReprocessCheckFailed(f"{line}: lower than the live version (--force accepts it)")
        passed.append(line + (" (lower, accepted by --force)" if after < before else ""))
    say(passed[-1])
    return passed


def _quality(settings: Settings, staging: str, keys: set[tuple[str, int]]) -> str:
    """The Great Expectations ``silver/chunks`` suite on the staged rows of the scope."""
    from lake.tables import SILVER_CHUNKS, SILVER_DOCUMENTS
    from quality import runner, sources

    lake = sources.Lake()
    lake.tables[SILVER_CHUNKS] = _staged_frame(settings, staging, keys)
    documents = sources.read_delta(settings, SILVER_DOCUMENTS)
    lake.tables[SILVER_DOCUMENTS] = None if documents is None else documents.to_pandas()
    report = runner.check(settings, [SILVER_CHUNKS], lake=lake)
    [result] = report.results
    if result.status == "failed":
        raise ReprocessCheckFailed("Great Expectations silver/chunks suite failed:\n" + "\n".join(report.failures()))
    return f"Great Expectations silver/chunks suite: {result.status} ({result.rows} staged rows)"


def evaluation_recall(
    settings: Settings, documents: Sequence[dict[str, Any]], embeddings: dict[str, tuple[str, str]]
) -> RecallEvaluator | None:
    """Recall@5 on ``bench/retrieval``'s evaluation set, for a table, when the set's documents
    (found by their file names, ``bench/corpus.py``) are among ``documents``; None otherwise.
    Uses ``bench/retrieval_metrics``' scoring and the live search (``lake.search``); each
    table is queried with its own embedding (``embeddings``: table -> (model, precision))."""
    from pathlib import Path

    from core.settings import PROJECT_ROOT

    try:
        from bench.corpus import DOCUMENTS
        from bench.retrieval_metrics import first_right_rank, load_truths, recall_at
    except ImportError:  # an install without the bench folder
        return None
    by_file = {Path(path).name: name for name, path in DOCUMENTS.items()}
    present = {by_file[d["filename"]]: d for d in documents if d["filename"] in by_file}
    if not present:
        return None
    data = PROJECT_ROOT / "bench" / "retrieval"
    truths = [
        t for half in ("phrases", "questions") for t in load_truths(data / f"{half}.jsonl") if t.document in present
    ]
    names = {d["document_id"]: name for name, d in present.items()}

    def evaluate(table_name: str) -> float:
        from lake.search import hybrid_search
        from lake.vectors import connect
        from processing.embedding import get_embedder

        db = connect(settings.lancedb)
        model, precision = embeddings[table_name]
        embedding = settings.embedding.model_copy(update={"model_package": model, "precision": precision})
        embedder = get_embedder(embedding)
        ranks = []
        for truth in truths:
            course = present[truth.document]["course_id"]
            hits = hybrid_search(
                db, course, truth.query, 10, embedder, settings=settings.lancedb, table_name=table_name
            )
            ranks.append(
                first_right_rank(truth, [(names.get(h.document_id, ""), h.page_start, h.page_end) for h in hits])
            )
        return recall_at(ranks, 5)

    return evaluate
