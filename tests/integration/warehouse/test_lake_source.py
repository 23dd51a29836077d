"""The Delta load with the lake on S3 (the stack's MinIO): delta-rs names the files added since the
stored version, the embedded warehouse engine reads them itself through ``s3()``; a rewritten key
keeps its newest row, a load with nothing new reads no file."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.integration


def _items(ids: range, *, question: str = "Q", explanation: str = "why") -> list[dict]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return [
        {"item_id": f"it-{i}", "quiz_id": "quiz-1", "document_id": "doc-1", "version": 1, "course_id": "course-1",
         "generator": "offline", "generator_version": "t-1", "run_at": at, "position": i, "kind": "mcq",
         "question": f"{question} {i}", "options": "[]", "correct_option_id": "a", "explanation": explanation,
         "source_chunk_id": f"c-{i}", "page": i + 1, "section_id": "s", "difficulty": "easy", "fact": "f"}
        for i in ids
    ]  # fmt: skip


def test_lake_on_s3_loads_only_the_new_files_through_the_engine(settings, stack, tmp_path):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from lake.gold import GOLD_QUIZ_ITEMS, GOLD_SCHEMAS
    from lake.store import s3_client
    from lake.tables import delta_location
    from warehouse.client import warehouse_session
    from warehouse.load import WarehouseLoader

    prefix = f"test-wh-{uuid.uuid4().hex[:8]}"
    data = settings.model_dump()
    data["object_store"]["mode"] = "s3"
    data["lake"]["root"] = f"s3a://{settings.object_store.bucket}/{prefix}"
    data["warehouse"]["dsn"] = f"chdb://{tmp_path / 'warehouse'}"
    s3 = type(settings)(**data)
    path, options = delta_location(s3, GOLD_QUIZ_ITEMS)
    schema = GOLD_SCHEMAS[GOLD_QUIZ_ITEMS]
    try:
        write_deltalake(path, pa.Table.from_pylist(_items(range(3), explanation=""), schema=schema),
                        storage_options=options)  # fmt: skip
        with warehouse_session(s3.warehouse) as client:
            loader = WarehouseLoader(s3, client)
            first = loader.run(sources=("lake",)).sources[0]
            assert (first.rows, first.watermark) == (3, f"{GOLD_QUIZ_ITEMS}@0 (+1 files)")
            # Version 1 rewrites item 2 and adds item 3: delta-rs replaces the first file by one new file
            # holding the kept rows and the new ones (4 rows), and only that file is read.
            new = pa.Table.from_pylist(_items(range(2, 4), question="New"), schema=schema)
            write_deltalake(path, new, mode="overwrite", predicate="item_id IN ('it-2', 'it-3')",
                            storage_options=options)  # fmt: skip
            second = loader.run(sources=("lake",)).sources[0]
            assert (second.rows, second.watermark) == (4, f"{GOLD_QUIZ_ITEMS}@1 (+1 files)")
            idle = loader.run(sources=("lake",)).sources[0]
            assert (idle.rows, idle.watermark) == (0, f"{GOLD_QUIZ_ITEMS}@1 (+0 files)")
            got = client.query("SELECT item_id, question, explanation, delta_version FROM dim_quiz_items"
                               " ORDER BY item_id").result_rows  # fmt: skip
        lake = DeltaTable(path, storage_options=options).to_pyarrow_table().sort_by("item_id").to_pylist()
        assert [(r[0], r[1]) for r in got] == [(r["item_id"], r["question"]) for r in lake]
        assert [r[1] for r in got] == ["Q 0", "Q 1", "New 2", "New 3"]
        assert [r[2] for r in got] == ["", "", "why", "why"]
        assert [r[3] for r in got] == [1, 1, 1, 1]
    finally:
        client_s3 = s3_client(s3.object_store)
        listed = client_s3.list_objects_v2(Bucket=settings.object_store.bucket, Prefix=f"{prefix}/")
        for item in listed.get("Contents", []):
            client_s3.delete_object(Bucket=settings.object_store.bucket, Key=item["Key"])
