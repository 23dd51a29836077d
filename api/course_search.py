"""Course search: hybrid retrieval (LanceDB vectors + full text, RRF) behind the membership check.

What a search needs is loaded at start-up, off the request path: ``load`` (run by the app's
lifespan in the background) opens the query embedder (the int8 ONNX model through
onnxruntime, no torch: ``processing.query_embedding``) and the LanceDB connection, then runs
one warm-up search so the first real one does not pay for first-use work (index files, ONNX
graph initialisation). ``/readyz`` answers 503 (``starting``) until it has finished; a search
arriving earlier waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.errors import ServiceUnavailable
from api.services import CourseService
from core.events import EVENT_SEARCH
from core.settings import Settings

if TYPE_CHECKING:
    from lake.search import SearchMode

log = logging.getLogger("api.search")
LOAD_WAIT_S = 120.0


class SearchService:
    def __init__(self, settings: Settings, courses: CourseService, *, analytics: Any = None) -> None:
        self.settings = settings
        self.courses = courses
        self.analytics = analytics  # streaming.analytics.AnalyticsPublisher: off the request's path
        self._loaded = threading.Event()
        self._error: str | None = None
        self._db: Any = None
        self._embedder: Any = None
        self._cache: Any = None  # lake.course_cache.CourseCache: table handles and hot courses' rows
        self.load_seconds: float | None = None

    @property
    def loading(self) -> bool:
        return not self._loaded.is_set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._error is None

    def status(self) -> dict[str, Any]:
        """The readiness entry of search: ok once loaded, else why not (yet)."""
        if not self._loaded.is_set():
            return {"name": "search", "ok": False, "latency_ms": None, "detail": "loading the query model"}
        if self._error is not None:
            return {"name": "search", "ok": False, "latency_ms": None, "detail": self._error[:200]}
        latency = round(self.load_seconds * 1000, 2) if self.load_seconds is not None else None
        cache = self._cache
        cached = f"; {cache.courses} courses cached ({cache.nbytes / 2**20:.0f} MiB)" if cache is not None else ""
        return {"name": "search", "ok": True, "latency_ms": latency, "detail": f"loaded{cached}"}

    def load(self) -> None:
        """Opens the query embedder and LanceDB and warms both up (blocking: run it off the loop)."""
        from lake.course_cache import course_cache
        from lake.search import hybrid_search
        from lake.vectors import connect
        from processing.query_embedding import query_embedder

        started = time.perf_counter()
        lance = self.settings.lancedb
        try:
            self._embedder = query_embedder(self.settings.embedding)
            self._db = connect(lance)
            self._cache = course_cache(lance)
            hybrid_search(
                self._db,
                str(uuid.UUID(int=0)),
                "warm up the search path",
                1,
                self._embedder,
                settings=lance,
                cache=self._cache,
            )
        except Exception as exc:
            log.exception("search could not be loaded")
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self.load_seconds = time.perf_counter() - started
            self._loaded.set()

    def search(
        self, course_id: uuid.UUID, principal: Principal, query: str, k: int, *, mode: SearchMode = "hybrid"
    ) -> list[dict[str, Any]]:
        return self.search_with_version(course_id, principal, query, k, mode=mode)[0]

    def search_with_version(
        self, course_id: uuid.UUID, principal: Principal, query: str, k: int, *, mode: SearchMode = "hybrid"
    ) -> tuple[list[dict[str, Any]], int]:
        """The hits and the index version (``lake.index_versions``) they were searched in."""
        self.courses.require_visible(course_id, principal)
        return self.search_visible(course_id, principal, query, k, mode=mode)

    async def asearch_with_version(
        self, course_id: uuid.UUID, principal: Principal, query: str, k: int, *, mode: SearchMode = "hybrid"
    ) -> tuple[list[dict[str, Any]], int]:
        """``search_with_version`` from the event loop: the membership check on the loop (its
        cache entries usually read by the request edge already), the search on a worker thread."""
        await self.courses.arequire_visible(course_id, principal)
        return await run_in_threadpool(self.search_visible, course_id, principal, query, k, mode=mode)

    def search_visible(
        self, course_id: uuid.UUID, principal: Principal, query: str, k: int, *, mode: SearchMode = "hybrid"
    ) -> tuple[list[dict[str, Any]], int]:
        """The search of a course the caller was checked to see."""
        from lake.index_versions import live_index
        from lake.search import hybrid_search

        if not self._loaded.wait(LOAD_WAIT_S) or self._error is not None:
            raise ServiceUnavailable("Search is not available yet; try again shortly.")
        index = live_index(self._db, self.settings.lancedb)
        hits = hybrid_search(
            self._db, str(course_id), query, k, self._embedder, settings=self.settings.lancedb, mode=mode,
            table_name=index.table_name, cache=self._cache,
        )  # fmt: skip
        if self.analytics is not None:
            self.analytics.emit(EVENT_SEARCH, user_id=str(principal.user_id), course_id=str(course_id),
                                result_count=len(hits), top_score=hits[0].score if hits else None, mode=mode,
                                query=query[:200])  # fmt: skip
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
        ], index.version
