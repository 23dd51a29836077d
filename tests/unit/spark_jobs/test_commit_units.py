from spark_jobs.ingest.batch import plan_commit_units


def test_small_documents_share_a_unit_and_come_before_a_big_one():
    # chunk counts: big, small, small, medium
    assert plan_commit_units([900, 3, 5, 32], budget=40) == [[1, 2, 3], [0]]
    assert plan_commit_units([900, 3, 5, 40], budget=40) == [[1, 2], [3], [0]]


def test_every_document_is_in_exactly_one_unit_smallest_first():
    counts = [7, 7, 1, 100, 50, 2]
    units = plan_commit_units(counts, budget=10)
    flat = [i for unit in units for i in unit]
    assert sorted(flat) == list(range(len(counts)))
    assert [counts[i] for i in flat] == sorted(counts)
    assert all(len(unit) == 1 or sum(counts[i] for i in unit) <= 10 for unit in units)


def test_no_documents_no_units():
    assert plan_commit_units([], budget=10) == []
