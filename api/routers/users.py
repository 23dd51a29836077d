"""The caller's own account."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, ServicesDep
from api.errors import problem_responses
from api.schemas import User

router = APIRouter(prefix="/v1/users", tags=["users"], responses=problem_responses(401, 404, 429, 503))


@router.get("/me", response_model=User)
def me(principal: PrincipalDep, services: ServicesDep) -> dict:
    """The authenticated user."""
    return services.users.get(principal.user_id)
