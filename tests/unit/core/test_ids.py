import uuid

from core.ids import chunk_id, page_id, uuid7


def test_uuid7_has_version_7_and_rfc_variant():
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_values_sort_by_creation_time():
    values = [uuid7() for _ in range(200)]
    timestamps = [v.int >> 80 for v in values]
    assert timestamps == sorted(timestamps)
    assert len(set(values)) == 200


def test_chunk_id_is_stable_and_distinguishes_version_and_index():
    assert chunk_id("d1", 1, 0) == chunk_id("d1", 1, 0)
    assert len({chunk_id("d1", 1, 0), chunk_id("d1", 2, 0), chunk_id("d1", 1, 1), chunk_id("d2", 1, 0)}) == 4
    assert chunk_id("d1", 1, 0) != page_id("d1", 1, 0)
