"""The API's one wiring seam: FastAPI dependencies. Tests swap only here (or via Settings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal
from api.errors import ServiceUnavailable, Unauthorized
from api.services import Services

# Dependencies are async: they never block, so they run on the event loop instead of costing
# a thread-pool hop each (the endpoints that touch PostgreSQL/Redis stay sync, in the pool).
# auto_error=False: a missing token becomes our own 401 problem, not FastAPI's plain 403.
bearer_scheme = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")


async def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("The service is starting up.")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    return services.tokens.principal(credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
