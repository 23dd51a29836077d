"""Every string contract between runtimes, defined once: Redis keys and channels, object keys.

Redis keys are relative: the Redis gateway (API) and workers add ``redis.key_prefix`` in front.
One key per operation, so Redis Cluster never needs a multi-slot command.
"""

from __future__ import annotations


# ---- cache-aside entries (the API caches; workers delete after a status change)
def course_key(course_id: str) -> str:
    return f"course:{course_id}"


def member_key(course_id: str, user_id: str) -> str:
    return f"member:{course_id}:{user_id}"


def course_list_key(user_id: str) -> str:
    return f"user:{user_id}:courses"


def document_list_key(course_id: str) -> str:
    return f"course:{course_id}:documents"


def document_key(course_id: str, document_id: str) -> str:
    return f"document:{course_id}:{document_id}"


def document_cache_keys(course_id: str, document_id: str) -> list[str]:
    """The cache entries a change of one document makes stale."""
    return [document_key(course_id, document_id), document_list_key(course_id)]


# ---- live jobs
def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def notifications_channel(user_id: str) -> str:
    return f"notifications:{user_id}"


def open_jobs_key(user_id: str) -> str:
    return f"user:{user_id}:open_jobs"


# ---- sessions and tokens
def session_key(session_id: str) -> str:
    return f"session:{session_id}"


def revoked_session_key(session_id: str) -> str:
    """Set when a session ends (logout, refresh-token reuse) for as long as an access token of it
    can live: the denylist that makes those access tokens answer 401 at once."""
    return f"revoked:session:{session_id}"


def login_failures_key(account: str) -> str:
    """Wrong passwords for one account (``account``: a digest of the email) in the current window."""
    return f"login:failures:{account}"


# ---- stream readiness
def stream_heartbeat_key(job_name: str) -> str:
    """Refreshed by a running stream after each trigger; readers treat a fresh value as 'running'."""
    return f"stream:{job_name}:heartbeat"


# ---- object store
def raw_object_key(course_id: str, document_id: str, version: int) -> str:
    """Immutable key of one document version's raw bytes in the raw zone."""
    return f"raw/uploads/{course_id}/{document_id}/v{version}.pdf"


# ---- study material (the API caches gold reads; the batch tasks delete them after writing)
def gold_rows_key(table: str, document_id: str, version: int) -> str:
    return f"gold:{table}:{document_id}:v{version}"


def course_cards_key(course_id: str) -> str:
    return f"gold:cards:{course_id}"


def quiz_items_key(quiz_id: str) -> str:
    return f"gold:quiz-items:{quiz_id}"


def card_key(card_id: str) -> str:
    return f"gold:card:{card_id}"


def document_by_id_key(document_id: str) -> str:
    return f"document-by-id:{document_id}"
