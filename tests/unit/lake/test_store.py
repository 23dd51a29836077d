import io

import pytest

from lake.store import LocalObjectStore


def test_local_store_round_trips_streamed_bytes(tmp_path):
    store = LocalObjectStore(tmp_path)
    payload = b"%PDF-1.7 " + bytes(range(256)) * 40000
    written = store.put_stream("raw/uploads/c1/d1.pdf", io.BytesIO(payload))
    assert written == len(payload)
    assert store.exists("raw/uploads/c1/d1.pdf")
    assert store.get_bytes("raw/uploads/c1/d1.pdf") == payload
    assert not list((tmp_path / "raw/uploads/c1").glob(".part-*"))
    store.delete("raw/uploads/c1/d1.pdf")
    assert not store.exists("raw/uploads/c1/d1.pdf")


def test_local_store_refuses_keys_outside_its_root(tmp_path):
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes"):
        store.put_stream("../outside.pdf", io.BytesIO(b"x"))
