"""Data-aware scheduling: after a micro-batch that indexed documents, one asset event on
Airflow's ``INDEXED_DOCUMENTS_ASSET``, which the study DAGs are scheduled on.

Best effort by design: the DAGs also run on a schedule that picks up whatever an event missed,
so Airflow being down never fails or slows the stream beyond one short, logged attempt.
"""

from __future__ import annotations

import logging
from typing import Any

from core.events import INDEXED_DOCUMENTS_ASSET, DocumentUploaded
from core.secrets import airflow_password
from core.settings import Settings

log = logging.getLogger("spark_jobs.status_airflow")


class AirflowAssetSink:
    """A ``DocumentStatusSink`` that only listens for indexed documents."""

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self._indexed: list[dict[str, Any]] = []
        self.events_sent = 0

    def _airflow(self) -> Any:
        if self._client is None:
            from orchestration.airflow_api import AirflowClient

            af = self.settings.airflow
            self._client = AirflowClient(
                af.url, username=af.admin_user, password=airflow_password(self.settings), timeout_s=5.0
            )
        return self._client

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        """Only outcomes matter here."""

    def searchable(self, doc: DocumentUploaded, *, chunks: int) -> None:
        pass  # the live stage is Redis's; the document row moves at indexed / failed

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        """Only outcomes matter here."""

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        self._indexed.append({"document_id": doc.document_id, "version": doc.version, "course_id": doc.course_id})

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        """A failed document has nothing to study."""

    def flush(self) -> None:
        if not self._indexed:
            return
        documents, self._indexed = self._indexed, []
        try:
            self._airflow().create_asset_event(uri=INDEXED_DOCUMENTS_ASSET, extra={"documents": documents})
            self.events_sent += 1
        except Exception as exc:  # noqa: BLE001 - the DAGs' schedule catches up; never fail the batch
            log.warning("asset event for %d indexed document(s) not sent: %s", len(documents), exc)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
