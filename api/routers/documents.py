"""Document metadata of a course (uploads are added by the ingestion service)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import PrincipalDep, ServicesDep
from api.errors import problem_responses
from api.schemas import Document, DocumentList

router = APIRouter(
    prefix="/v1/courses/{course_id}/documents", tags=["documents"], responses=problem_responses(401, 404, 422, 429)
)


@router.get("", response_model=DocumentList)
def list_documents(course_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict:
    """The latest version of each document in the course (cached)."""
    return {"items": services.documents.list(course_id, principal)}


@router.get("/{document_id}", response_model=Document)
def get_document(course_id: uuid.UUID, document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict:
    """One document's metadata (cached)."""
    return services.documents.get(course_id, document_id, principal)
