"""The table function the warehouse engine reads new Delta files with, chosen by where the lake is:
``file()`` for a local path, ``s3()`` (the object store's endpoint and keys) for ``s3://`` URIs."""

from __future__ import annotations

import pytest

from core.settings import Settings
from warehouse.lake_source import MAX_FILES_PER_READ, LakeReadError, table_functions


def _settings() -> Settings:
    data = Settings().model_dump()
    data["object_store"].update(endpoint_url="http://minio.example:9000", access_key="ak", secret_key="s'k")
    return Settings(**data)


def test_local_files_of_one_directory_are_one_file_function_with_a_glob():
    got = table_functions(_settings(), ["/lake/gold/t/a.parquet", "/lake/gold/t/b.parquet"], structure="`x` Int32")
    assert got == ["file('/lake/gold/t/{a.parquet,b.parquet}', 'Parquet', '`x` Int32')"]


def test_s3_files_read_through_the_endpoint_with_the_keys_quoted():
    got = table_functions(_settings(), ["s3://bucket/lake/gold/t/a.parquet", "s3://bucket/lake/gold/t/p=1/b.parquet"])
    assert got == [
        "s3('http://minio.example:9000/bucket/lake/gold/t/a.parquet', 'ak', 's\\'k', 'Parquet')",
        "s3('http://minio.example:9000/bucket/lake/gold/t/p=1/b.parquet', 'ak', 's\\'k', 'Parquet')",
    ]


def test_many_files_are_split_and_unsupported_locations_refused():
    files = [f"/lake/t/f{i}.parquet" for i in range(MAX_FILES_PER_READ + 1)]
    assert len(table_functions(_settings(), files)) == 2
    with pytest.raises(LakeReadError, match="only local paths and s3://"):
        table_functions(_settings(), ["gs://bucket/t/a.parquet"])
    with pytest.raises(LakeReadError, match="glob characters"):
        table_functions(_settings(), ["/lake/we*ird/a.parquet"])
