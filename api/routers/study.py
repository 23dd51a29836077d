"""Study material: notes, quizzes and attempts, flashcards and reviews, the Anki export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from api.deps import PrincipalDep, ServicesDep
from api.errors import Conflict, problem_responses
from api.routers.jobs import job_body
from api.schemas import (
    AttemptIn,
    AttemptOut,
    DueCards,
    GenerationRequested,
    NotReadyBody,
    QuizOut,
    ReviewIn,
    ReviewOut,
)
from api.study import NotReady
from study.models import Notes

router = APIRouter(tags=["study"], responses=problem_responses(401, 404, 422, 429, 503))
_NOT_READY: dict[int | str, dict[str, Any]] = {202: {"model": NotReadyBody, "description": "Not generated yet"}}


def _not_ready(exc: NotReady) -> JSONResponse:
    return JSONResponse({"status": "not_ready", "detail": exc.detail, "job": None}, status_code=202)


@router.get("/v1/documents/{document_id}/notes", response_model=Notes, responses=_NOT_READY)
def get_notes(document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict | JSONResponse:
    """AI notes of the newest indexed version: section notes, an overview and key terms, every
    sentence with the page(s) it comes from, and their quality scores."""
    try:
        return services.study.notes(document_id, principal)
    except NotReady as exc:
        return _not_ready(exc)


def _request(kind: str, document_id: uuid.UUID, principal, services, response: Response) -> dict:
    location = f"/v1/documents/{document_id}/{kind}"
    try:
        outcome = services.study.request(kind, document_id, principal)
    except NotReady as exc:
        raise Conflict(exc.detail) from exc
    job = outcome["job"]
    response.status_code = 200 if outcome["status"] == "ready" else 202
    response.headers["Location"] = location if job is None else f"/v1/jobs/{job.job_id}"
    return {"status": outcome["status"], "job": job_body(job) if job else None, "location": location}


@router.post(
    "/v1/documents/{document_id}/notes",
    response_model=GenerationRequested,
    status_code=202,
    responses={200: {"model": GenerationRequested}, **problem_responses(409, 503)},
)
def request_notes(document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep, response: Response) -> dict:
    """Asks for the document's notes: 202 with a job (progress over the notifications WebSocket)
    that a DAG run fulfils, or 200 when they exist. Asking again while it runs starts nothing new."""
    return _request("notes", document_id, principal, services, response)


@router.post(
    "/v1/documents/{document_id}/quiz",
    response_model=GenerationRequested,
    status_code=202,
    responses={200: {"model": GenerationRequested}, **problem_responses(409, 503)},
)
def request_quiz(document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep, response: Response) -> dict:
    """Asks for the document's quiz (and flashcards), as for notes."""
    return _request("quiz", document_id, principal, services, response)


@router.get("/v1/documents/{document_id}/quiz", response_model=QuizOut, responses=_NOT_READY)
def get_quiz(document_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict | JSONResponse:
    """The document's quiz, without its key."""
    try:
        return services.study.quiz(document_id, principal)
    except NotReady as exc:
        return _not_ready(exc)


@router.post(
    "/v1/quizzes/{quiz_id}/attempts", response_model=AttemptOut, status_code=201, responses=problem_responses(400, 413)
)
def post_attempt(quiz_id: uuid.UUID, body: AttemptIn, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Grades the answers by option id, stores the attempt and returns the score with the
    correct answers and explanations."""
    return services.study.grade(
        str(quiz_id), principal, answers=[a.model_dump() for a in body.answers], attempt_id=body.attempt_id
    )


@router.get("/v1/courses/{course_id}/reviews/due", response_model=DueCards)
def due_reviews(
    course_id: uuid.UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200, description="Most cards to return")] = 20,
) -> dict:
    """The caller's flashcards of the course that are due now (never-reviewed first)."""
    return services.study.due_cards(course_id, principal, limit=limit, now=datetime.now(UTC))


@router.post(
    "/v1/cards/{card_id}/reviews", response_model=ReviewOut, status_code=201, responses=problem_responses(400, 413)
)
def post_review(card_id: uuid.UUID, body: ReviewIn, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Records a review (again / hard / good / easy); FSRS schedules the card's next due time."""
    return services.study.review(
        str(card_id), principal, rating=body.rating, review_id=body.review_id, now=datetime.now(UTC)
    )


@router.get(
    "/v1/courses/{course_id}/cards.apkg",
    response_class=Response,
    responses={200: {"content": {"application/apkg": {}}}, **_NOT_READY},
)
def export_deck(course_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """The course's flashcards as an Anki deck."""
    try:
        data = services.study.deck(course_id, principal)
    except NotReady as exc:
        return _not_ready(exc)
    return Response(
        data,
        media_type="application/apkg",
        headers={"Content-Disposition": f'attachment; filename="course-{course_id}.apkg"'},
    )
