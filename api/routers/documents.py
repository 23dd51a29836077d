"""Documents of a course: upload (202 Accepted + job), metadata, search."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Header, Query, Response, UploadFile

from api.deps import PrincipalDep, ServicesDep
from api.errors import problem_responses
from api.schemas import Document, DocumentList, SearchResults, UploadAccepted
from api.uploads import IncomingFile
from lake.search import SearchMode

router = APIRouter(
    prefix="/v1/courses/{course_id}/documents", tags=["documents"], responses=problem_responses(401, 404, 422, 429, 503)
)


@router.get("", response_model=DocumentList)
def list_documents(course_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict:
    """The latest version of each document in the course (cached)."""
    return {"items": services.documents.list(course_id, principal)}


@router.get("/{document_id}", response_model=Document)
def get_document(course_id: uuid.UUID, document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict:
    """One document's metadata (cached)."""
    return services.documents.get(course_id, document_id, principal)


@router.post(
    "",
    response_model=UploadAccepted,
    status_code=202,
    responses=problem_responses(400, 413, 415, 503),
)
def upload_documents(
    course_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    files: Annotated[
        list[UploadFile], File(min_length=1, description="One or more PDF files, each a multipart part named `files`")
    ],
    replace: Annotated[bool, Query(description="Process identical bytes again as a new version")] = False,
    traceparent: Annotated[str | None, Header(description="W3C trace context to continue")] = None,
) -> dict:
    """Upload PDFs: stored in the raw zone, deduplicated by SHA-256 within the course, queued for
    indexing. Answers 202 with one job per new document (follow it at `location`, or over the
    notifications WebSocket); identical bytes point to the existing document instead."""
    incoming = [IncomingFile(filename=f.filename or "upload.pdf", stream=f.file) for f in files]
    results = [
        {**result, "location": _location(course_id, result)}
        for result in services.uploads.upload(course_id, principal, incoming, replace=replace, traceparent=traceparent)
    ]
    first_job = next((r for r in results if r["job_id"]), None)
    if first_job is not None:
        response.headers["Location"] = first_job["location"]
    return {"jobs": results}


def _location(course_id: uuid.UUID, result: dict) -> str:
    """Where to follow one upload: its job, or the existing document it duplicates."""
    if result["job_id"]:
        return f"/v1/jobs/{result['job_id']}"
    return f"/v1/courses/{course_id}/documents/{result['document_id']}"


search_router = APIRouter(
    prefix="/v1/courses/{course_id}/search", tags=["search"], responses=problem_responses(401, 404, 422, 429, 503)
)


@search_router.get("", response_model=SearchResults)
async def search_course(
    course_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for")],
    k: Annotated[int, Query(ge=1, le=50, description="How many passages to return")] = 10,
    mode: Annotated[
        SearchMode,
        Query(
            description="`hybrid`: vector and full-text lists fused by reciprocal rank; `text`: full text (BM25)"
            " alone; `vector`: embedding similarity alone. Same hit shape in every mode"
        ),
    ] = "hybrid",
) -> dict:
    """Hybrid search (vector + full text, fused by reciprocal rank) over the course's indexed
    documents, with the page span of every passage; `mode` picks one side alone."""
    hits, index_version = await services.search.asearch_with_version(course_id, principal, q, k, mode=mode)
    return {"query": q, "hits": hits, "index_version": index_version}
