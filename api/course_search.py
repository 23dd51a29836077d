"""Course search: hybrid retrieval (LanceDB vectors + full text, RRF) behind the membership check.

The embedding model and the LanceDB connection are opened on the first search, not at start-up:
the API serves everything else without loading a model.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from api.auth import Principal
from api.services import CourseService
from core.settings import Settings


class SearchService:
    def __init__(self, settings: Settings, courses: CourseService) -> None:
        self.settings = settings
        self.courses = courses
        self._lock = threading.Lock()
        self._db: Any = None
        self._embedder: Any = None

    def _open(self) -> tuple[Any, Any]:
        with self._lock:
            if self._db is None:
                from lake.vectors import connect
                from processing.embedding import get_embedder

                self._embedder = get_embedder(self.settings.embedding)
                self._db = connect(self.settings.lancedb)
            return self._db, self._embedder

    def search(self, course_id: uuid.UUID, principal: Principal, query: str, k: int) -> list[dict[str, Any]]:
        from lake.search import hybrid_search

        self.courses.require_visible(course_id, principal)
        db, embedder = self._open()
        hits = hybrid_search(db, str(course_id), query, k, embedder, settings=self.settings.lancedb)
        return [
            {
                "chunk_id": hit.chunk_id,
                "document_id": hit.document_id,
                "version": hit.version,
                "page_start": hit.page_start,
                "page_end": hit.page_end,
                "text": hit.text,
                "score": hit.score,
            }
            for hit in hits
        ]
