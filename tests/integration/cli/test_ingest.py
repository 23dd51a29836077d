"""`lakehouse ingest`'s upload loop against the real app (TestClient is an httpx.Client)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from api.main import create_app
from cli.ingest import IngestError, collect_pdfs, upload_all
from processing.samples import not_a_pdf, short_pdf
from tests.integration.api.api_testkit import create_course, derive, sign_up

pytestmark = pytest.mark.integration


def test_collect_pdfs_walks_folders_and_refuses_missing_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.pdf").write_bytes(b"%PDF-1")
    (tmp_path / "a" / "b" / "two.PDF").write_bytes(b"%PDF-1")
    (tmp_path / "a" / "notes.txt").write_text("x")
    found = collect_pdfs([tmp_path / "a", tmp_path / "a" / "one.pdf"])
    assert sorted(p.name for p in found) == ["one.pdf", "two.PDF"]  # folders recursively, no repeats
    with pytest.raises(IngestError, match="no such file"):
        collect_pdfs([tmp_path / "absent"])


def test_upload_all_uploads_a_folder_and_reports_refusals(api_settings, tmp_path):
    settings = derive(
        api_settings,
        kafka={"topic_prefix": f"c{uuid.uuid4().hex[:8]}."},
        object_store={"local_root": tmp_path / "objects"},
    )
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "week1.pdf").write_bytes(short_pdf("Week one: vectors"))
    (folder / "week2.pdf").write_bytes(short_pdf("Week two: matrices"))
    (folder / "scan.pdf").write_bytes(not_a_pdf())
    with TestClient(create_app(settings)) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
        client.headers.update(owner.headers)
        files = collect_pdfs([folder])
        uploaded, failed = upload_all(client, course["id"], files, replace=False, console=Console(quiet=True))
        again, _ = upload_all(client, course["id"], [folder / "week1.pdf"], replace=False, console=Console(quiet=True))
    assert sorted(u.path.name for u in uploaded) == ["week1.pdf", "week2.pdf"]
    assert all(u.job_id and not u.duplicate for u in uploaded)
    assert [(path.name, "415" in reason and "%PDF-" in reason) for path, reason in failed] == [("scan.pdf", True)]
    assert again[0].duplicate and again[0].document_id in {u.document_id for u in uploaded}
