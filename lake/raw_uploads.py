"""Reading a raw upload from the object store by its URI: transient errors (the store cannot be
reached or answered "try again": connection refused or reset, timeouts, HTTP 5xx, throttling)
are retried with backoff; permanent ones (missing object) are raised at once. The reasons a
student sees when a read fails. Used by the ingestion stream (``spark_jobs.ingest.raw``) and
by reprocessing (``lake.reprocess``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from core.settings import IngestSettings, ObjectStoreSettings

if TYPE_CHECKING:
    from lake.store import ObjectStore

log = logging.getLogger(__name__)

_RETRYABLE_S3_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}
_MISSING_S3_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class RawObjectMissing(Exception):
    """The raw upload is not in the store (permanent)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_s: float
    backoff_max_s: float

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> RetryPolicy:
        return cls(settings.read_attempts, settings.read_backoff_s, settings.read_backoff_max_s)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)


def is_transient(exc: BaseException) -> bool:
    """True for errors a later read may not meet again: network, timeouts, 5xx, throttling."""
    if isinstance(exc, (FileNotFoundError, RawObjectMissing)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - boto3 is installed with the project
        return False
    if isinstance(exc, (boto.ConnectionError, boto.HTTPClientError)):
        return True
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or error.get("Code") in _RETRYABLE_S3_CODES
    return False


def _is_missing(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, RawObjectMissing)):
        return True
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING_S3_CODES


class RawUploadReader:
    """Reads raw uploads by URI through an ``ObjectStore`` (the configured one unless given)."""

    def __init__(
        self,
        store_settings: ObjectStoreSettings,
        policy: RetryPolicy,
        *,
        store: ObjectStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store_settings = store_settings
        self.policy = policy
        self._store = store
        self.sleep = sleep

    def _configured_store(self) -> ObjectStore:
        from lake.store import object_store

        if self._store is None:
            self._store = object_store(self.store_settings)
        return self._store

    def locate(self, uri: str) -> tuple[ObjectStore, str]:
        """The store holding ``uri`` and the object's key in it."""
        from lake.store import LocalObjectStore, S3ObjectStore

        parsed = urlparse(uri)
        settings = self.store_settings
        if parsed.scheme in {"s3a", "s3"}:
            if settings.mode == "s3" and parsed.netloc == settings.bucket:
                return self._configured_store(), parsed.path.lstrip("/")
            return S3ObjectStore(settings.model_copy(update={"bucket": parsed.netloc})), parsed.path.lstrip("/")
        if parsed.scheme == "file" or (parsed.scheme == "" and uri.startswith("/")):
            path = Path(unquote(parsed.path)).resolve()
            root = Path(settings.local_root).resolve()
            if settings.mode == "local" and root in path.parents:
                return self._configured_store(), str(path.relative_to(root))
            return LocalObjectStore(path.parent), path.name
        raise ValueError(f"unsupported object URI scheme: {uri}")

    def read(self, uri: str) -> bytes:
        """The object's bytes; transient errors are retried, the last one re-raised."""
        store, key = self.locate(uri)
        for attempt in range(1, self.policy.attempts + 1):
            try:
                return store.get_bytes(key)
            except Exception as exc:
                if not is_transient(exc) or attempt == self.policy.attempts:
                    raise
                delay = self.policy.delay(attempt)
                log.warning("raw upload %s: %s: %s; read %d of %d again in %.1f s", uri, type(exc).__name__, exc,
                            attempt + 1, self.policy.attempts, delay)  # fmt: skip
                self.sleep(delay)
        raise AssertionError("unreachable")


def read_failure_reason(uri: str, exc: Exception, *, attempts: int) -> str:
    """What the student sees when the raw upload could not be read."""
    detail = f"{type(exc).__name__}: {exc}"
    if is_transient(exc):
        return f"object store unreachable after {attempts} attempts: {detail}"[:500]
    if _is_missing(exc):
        return f"raw upload missing at {uri}: {detail}"[:500]
    return f"raw upload not readable at {uri}: {detail}"[:500]


def hash_mismatch_reason(actual: str, expected: str) -> str:
    return f"content hash mismatch: the stored object has sha256 {actual}, the event says {expected}"
