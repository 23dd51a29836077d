"""Courses: create (instructors), join by code (students), read, update, list mine."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import PrincipalDep, ServicesDep
from api.errors import METHOD_NOT_ALLOWED_ROUTE, problem_responses
from api.schemas import Course, CourseCreate, CourseList, CourseUpdate, JoinCourse

router = APIRouter(prefix="/v1/courses", tags=["courses"], responses=problem_responses(401, 422, 429, 503))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Course, responses=problem_responses(400, 403, 413))
def create_course(body: CourseCreate, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Creates a course owned by the calling instructor; the response carries its join code."""
    return services.courses.create(principal, title=body.title, description=body.description)


@router.get("", response_model=CourseList)
def my_courses(principal: PrincipalDep, services: ServicesDep) -> dict:
    """The courses the caller teaches or is enrolled in (read across shards, cached)."""
    return {"items": services.courses.my_courses(principal)}


@router.post("/join", response_model=Course, responses=problem_responses(400, 404, 413))
def join_course(body: JoinCourse, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Enrols the caller in the course of a join code (idempotent)."""
    return services.courses.join(principal, join_code=body.join_code)


@router.api_route(
    "/join",
    methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
    name=METHOD_NOT_ALLOWED_ROUTE,
    include_in_schema=False,
)
def join_other_methods() -> None:
    """405 (Allow: POST), not a 422 from the /{course_id} routes reading "join" as an id."""
    raise StarletteHTTPException(status.HTTP_405_METHOD_NOT_ALLOWED)


@router.get("/{course_id}", response_model=Course, responses=problem_responses(404))
async def get_course(course_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """One course; 404 unless the caller is a member (cached)."""
    # The hot read: on the event loop, serialised once by its model (the same JSON FastAPI's
    # response_model would produce, without validating the returned dict a second time).
    course = Course.model_validate(await services.courses.aview(course_id, principal))
    return Response(course.model_dump_json(), media_type="application/json")


@router.patch("/{course_id}", response_model=Course, responses=problem_responses(400, 403, 404, 413))
def update_course(course_id: uuid.UUID, body: CourseUpdate, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Changes title or description (the course's instructors); invalidates its cache entries."""
    return services.courses.update(course_id, principal, changes=body.model_dump(exclude_unset=True))
