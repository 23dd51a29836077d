"""Job status: live from Redis, durable in PostgreSQL."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import PrincipalDep, ServicesDep
from api.errors import problem_responses
from api.schemas import Job
from core.jobs import JobState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 404, 422, 429, 503))


def job_body(state: JobState) -> dict:
    data = state.model_dump()
    data["id"] = data.pop("job_id")
    data.pop("user_id")
    return data


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: uuid.UUID, principal: PrincipalDep, services: ServicesDep) -> dict:
    """Status, progress (pages done / total), ETA and failure reason of a job the caller may see."""
    return job_body(services.jobs.get(str(job_id), principal))
