"""The API's one wiring seam: FastAPI dependencies. Tests swap only here (or via Settings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal
from api.container import Services
from api.errors import ServiceUnavailable, Unauthorized
from api.middleware import SESSION_CHECK

# Dependencies are async: they never block (Redis through its asyncio client), so they run on
# the event loop instead of costing a thread-pool hop each.
# auto_error=False: a missing token becomes our own 401 problem, not FastAPI's plain 403.
bearer_scheme = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")


async def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("The service is starting up.")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_websocket_services(websocket: WebSocket) -> Services | None:
    """The services for a WebSocket route (None while starting: the route closes with 1013)."""
    return getattr(websocket.app.state, "services", None)


WebSocketServicesDep = Annotated[Services | None, Depends(get_websocket_services)]


async def current_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    principal = services.tokens.principal(credentials.credentials)
    # The edge read the session denylist in its Redis round trip already (rate limits on);
    # otherwise one asyncio Redis read here.
    checked = request.scope.get("state", {}).get(SESSION_CHECK)
    if checked is not None and checked[0] == credentials.credentials:
        if checked[1] and principal.session_id:
            raise Unauthorized("The session of this access token has ended; log in again.")
        return principal
    await services.tokens.arequire_live_session(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
