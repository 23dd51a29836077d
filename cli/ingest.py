"""`lakehouse ingest`: upload a file or whole folders of PDFs to a course, with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class IngestError(RuntimeError):
    """The API refused an upload; the message carries its problem detail."""


@dataclass(frozen=True)
class Uploaded:
    path: Path
    job_id: str | None  # None when the bytes were already in the course
    document_id: str
    duplicate: bool


def collect_pdfs(paths: list[Path]) -> list[Path]:
    """Files given directly, plus every *.pdf under given folders, sorted, without repeats."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for pdf in sorted(path.rglob("*")):
                if pdf.is_file() and pdf.suffix.lower() == ".pdf":
                    found[pdf.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            raise IngestError(f"{path}: no such file or folder")
    return list(found)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('title', '')}: {body.get('detail', '')}".strip()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"


def upload_all(
    client: httpx.Client,
    course_id: str,
    files: list[Path],
    *,
    replace: bool,
    console: Console,
) -> tuple[list[Uploaded], list[tuple[Path, str]]]:
    """Uploads one file per request (streamed from disk); failures are collected, not fatal."""
    uploaded: list[Uploaded] = []
    failed: list[tuple[Path, str]] = []
    total_bytes = sum(f.stat().st_size for f in files)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"uploading {len(files)} files ({total_bytes / 1e6:.1f} MB)", total=len(files))
        for path in files:
            with path.open("rb") as handle:
                response = client.post(
                    f"/v1/courses/{course_id}/documents",
                    params={"replace": str(replace).lower()},
                    files={"files": (path.name, handle, "application/pdf")},
                )
            if response.status_code == 202:
                for job in response.json()["jobs"]:
                    uploaded.append(Uploaded(path, job["job_id"], job["document_id"], job.get("duplicate", False)))
            else:
                failed.append((path, _problem(response)))
            progress.advance(task)
    return uploaded, failed


def wait_for_jobs(client: httpx.Client, jobs: list[Uploaded], *, console: Console, timeout_s: float) -> dict[str, dict]:
    """Polls each job until it succeeds or fails, showing pages done across all of them."""
    pending = {u.job_id: u for u in jobs if u.job_id is not None}
    final: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("indexing", total=len(pending))
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                response = client.get(f"/v1/jobs/{job_id}")
                if response.status_code != 200:
                    raise IngestError(f"job {job_id}: {_problem(response)}")
                job = response.json()
                if job["status"] in ("succeeded", "failed"):
                    final[job_id] = job
                    pending.pop(job_id)
                    progress.advance(task)
            if pending:
                time.sleep(0.5)
    for job_id in pending:
        final[job_id] = {"job_id": job_id, "status": "timeout"}
    return final
