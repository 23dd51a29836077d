"""Sign-up, login, token refresh and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.auth import hash_password, verify_password
from api.deps import ServicesDep
from api.errors import Unauthorized, problem_responses
from api.login_throttle import LoginThrottle
from api.schemas import Login, RefreshRequest, SignUp, Tokens, User

router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=problem_responses(400, 413, 422, 429, 503))


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=User, responses=problem_responses(409))
def sign_up(body: SignUp, services: ServicesDep) -> dict:
    """Creates an account (student or instructor). The email is unique across all shards."""
    return services.users.sign_up(
        email=str(body.email),
        password_hash=hash_password(body.password),
        role=body.role,
        display_name=body.display_name,
    )


@router.post("/login", response_model=Tokens, responses=problem_responses(401))
def login(body: Login, request: Request, services: ServicesDep) -> dict:
    """Exchanges email and password for an access token and a refresh token (a new session).
    Too many wrong passwords for one account answer 429 for a while, even with the right one."""
    throttle = LoginThrottle(request.app.state.settings.api, services.redis)
    throttle.check(str(body.email))
    user = services.users.credentials(str(body.email))
    # verify_password runs even without a user (on a dummy hash: timing does not tell which emails
    # exist) and is then False; ``user is None`` only says so to the type checker.
    if not verify_password(user["password_hash"] if user else None, body.password) or user is None:
        throttle.failed(str(body.email))  # unknown emails too: the throttle tells nothing about accounts
        raise Unauthorized("The email or the password is wrong.")
    throttle.succeeded(str(body.email))
    pair = services.tokens.start_session(
        user_id=user["id"], role=user["role"], user_agent=request.headers.get("user-agent", "")[:200]
    )
    return pair.__dict__


@router.post("/refresh", response_model=Tokens, responses=problem_responses(401))
def refresh(body: RefreshRequest, services: ServicesDep) -> dict:
    """Rotates a refresh token: the old one stops working, a reused old one ends the session."""
    return services.tokens.refresh(body.refresh_token).__dict__


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401))
def logout(body: RefreshRequest, services: ServicesDep) -> Response:
    """Revokes the session of a refresh token."""
    services.tokens.revoke(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
