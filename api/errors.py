"""The one error model of the API: ``application/problem+json`` (RFC 9457) for every 4xx/5xx.

Domain code raises the typed ``ProblemError`` subclasses below; the handlers installed by
``install_error_handlers`` map them, FastAPI's validation errors, Starlette's HTTP errors and
anything unhandled to a ``Problem`` body carrying the request id.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import current_request_id

log = logging.getLogger("api.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://lakehouse.example/problems/"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the bad value is, e.g. ['body', 'title']")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="Short, human-readable summary of the kind of problem")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="What went wrong in this request")
    request_id: str | None = Field(None, description="The request id, also in the X-Request-ID header")
    errors: list[FieldError] | None = Field(None, description="Field errors of a validation problem")


class ProblemError(Exception):
    """A domain error with its HTTP mapping. Subclasses set status, title and the type slug."""

    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ProblemError):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(ProblemError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="lakehouse"'})


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class TooManyRequests(ProblemError):
    status, title, slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class ServiceUnavailable(ProblemError):
    """A dependency is down for now: the answer says when to try again (``Retry-After``)."""

    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s), **(headers or {})})


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_BASE + (slug or str(status)),
        title=title or _TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        request_id=current_request_id(),
        errors=[FieldError(**e) for e in errors] if errors is not None else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _message(error: dict[str, Any]) -> str:
    """Pydantic's message, or a plainer one where it speaks about our internals."""
    if tuple(error.get("loc", ())) == ("body", "files") and error.get("type") in ("missing", "too_short"):
        return "Attach at least one PDF: a multipart/form-data part named 'files' with a file name."
    return str(error.get("msg", ""))


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        where = next(e for e in raw if e.get("type") == "json_invalid")
        ctx = where.get("ctx") or {}
        return problem_response(
            400,
            f"The request body is not valid JSON ({ctx.get('error', 'parse error')}).",
            title="Malformed JSON",
            slug="malformed-json",
        )
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type", ""))} for e in raw]
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem_response(
        422, f"The request is invalid: {summary}", title="Validation Failed", slug="validation", errors=errors
    )


# Name of the catch-all routes that answer 405 on a literal path a path parameter would otherwise
# swallow (PATCH /v1/courses/join must not be read as PATCH /v1/courses/{course_id="join"}).
METHOD_NOT_ALLOWED_ROUTE = "method_not_allowed"


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's (405 stubs excluded)."""
    from starlette.routing import Match

    matching, literal = [], False
    for route in request.app.router.routes:
        # Any method: a route of another method matches partially, which still names the path.
        if route.matches({**request.scope, "method": "GET"})[0] == Match.NONE:
            continue
        if getattr(route, "name", "") == METHOD_NOT_ALLOWED_ROUTE:
            literal = True  # the path is a literal one (/join): routes with parameters do not count
        elif getattr(route, "methods", None):
            matching.append(route)
    methods: set[str] = set()
    for route in matching:
        if not (literal and getattr(route, "param_convertors", None)):
            methods.update(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Registers the mapping of every error to a problem+json response."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.detail, title=exc.title, slug=exc.slug, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ProblemError):
            # FastAPI wraps errors raised while reading the body (e.g. our streamed-size limit) in a 400.
            cause = exc.__cause__
            return problem_response(
                cause.status, cause.detail, title=cause.title, slug=cause.slug, headers=cause.headers
            )
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No resource at {request.url.path}."
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only
            # (GET /v1/courses/{id} hides PATCH): every route of the path counts.
            allowed = allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}."
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return problem_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(psycopg.OperationalError)  # a shard down, or its pool exhausted (PoolTimeout)
    async def _database_unavailable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(
            503,
            "The database shard holding this data is not answering (down or overloaded); try again shortly.",
            slug="database-unavailable",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "An unexpected error occurred; quote the request id when reporting it.")


# Documented on every route: what the problem responses look like.
PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given problem statuses."""
    return {
        status: {"model": Problem, "description": _TITLES.get(status, "Error"), "content": PROBLEM_CONTENT}
        for status in statuses
    }
