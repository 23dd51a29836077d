import io

import pytest

from lake.store import S3ObjectStore

pytestmark = pytest.mark.integration


def test_s3_store_streams_multipart_uploads_to_minio(settings, stack, run_id):
    store = S3ObjectStore(settings.object_store)
    payload = bytes(range(256)) * (20 * 1024 * 16)  # 20 MiB: more than one multipart part
    key = f"test/{run_id}/big.bin"
    assert store.put_stream(key, io.BytesIO(payload)) == len(payload)
    assert store.exists(key)
    assert store.get_bytes(key) == payload
    assert store.uri(key) == f"s3a://{settings.object_store.bucket}/{key}"
    store.delete(key)
    assert not store.exists(key)
