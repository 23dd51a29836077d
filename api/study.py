"""Study material at the API: notes, quizzes (graded by option id), flashcards with FSRS reviews,
and the Anki export.

Gold rows are read with delta-rs and cached (cache-aside, keyed by the artifact), because a
point read of a Delta table costs tens of milliseconds. Everything is behind the membership
check of the document's course: another course's notes, quiz or card is a 404.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from api.auth import Principal
from api.cache import CacheAside, RedisDown
from api.errors import NotFound, ProblemError, ServiceUnavailable
from api.services import CourseService, JobService
from core.events import EVENT_NOTES_VIEWED, EVENT_QUIZ_STARTED
from core.keys import card_key, course_cards_key, document_by_id_key, gold_rows_key, quiz_items_key
from core.settings import Settings
from lake import gold
from records.documents import DocumentRecords
from records.rows import jsonable
from records.study import StudyRecords, state_json
from study import anki, srs


class NotReady(Exception):
    """The artifact is not generated yet: the router answers 202 with this detail (and the job
    that generates it, when one runs)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Orchestrator(Protocol):
    """What the API needs of Airflow (``orchestration.airflow_api.AirflowClient``)."""

    def unpause(self, dag_id: str) -> None: ...

    def trigger(self, dag_id: str, *, run_id: str, conf: dict[str, Any] | None = None) -> Any: ...


class Analytics(Protocol):
    """Where student actions go for the warehouse (``streaming.analytics.AnalyticsPublisher``)."""

    def emit(self, name: str, *, user_id: str | None, course_id: str | None, **properties: Any) -> None: ...


# The DAG that makes each kind of material, and the gold table whose row says it exists.
GENERATION_DAGS = {"notes": ("summarise_documents", gold.GOLD_NOTES), "quiz": ("generate_quizzes", gold.GOLD_QUIZZES)}


class UnprocessableAnswer(ProblemError):
    status, title, slug = 422, "Unprocessable Content", "invalid-answers"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


class StudyService:
    def __init__(
        self,
        settings: Settings,
        *,
        documents: DocumentRecords,
        courses: CourseService,
        records: StudyRecords,
        cache: CacheAside,
        jobs: JobService,
        orchestrator: Callable[[], Orchestrator],
        analytics: Analytics,
    ) -> None:
        self.settings = settings
        self.documents = documents
        self.courses = courses
        self.records = records
        self.cache = cache
        self.jobs = jobs
        self.orchestrator = orchestrator
        self.analytics = analytics

    # ---- lookups -------------------------------------------------------------------------------
    def document(self, document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        """The newest indexed version of a document the caller may see (404 otherwise)."""
        did = str(document_id)
        located = self.cache.get_or_load("document_by_id", document_by_id_key(did), lambda: self._locate(did))
        if located is None:
            raise NotFound("No document with this id.")
        try:
            self.courses.require_visible(located["course_id"], principal)
        except NotFound:
            # Same answer as an unknown id: another course's document ids must not be testable.
            raise NotFound("No document with this id.") from None
        indexed = jsonable(self.documents.latest_indexed(located["course_id"], did))
        if indexed is None:
            raise NotReady("The document is not indexed yet; study material follows its indexing.")
        return indexed

    def _locate(self, document_id: str) -> dict[str, Any] | None:
        row = jsonable(self.documents.find(document_id))
        return {"course_id": row["course_id"]} if row else None

    def _cached_gold(self, key: str, read: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Gold rows through the cache; an empty answer (nothing yet) is not cached, so material
        that appears is seen at once."""
        rows = self.cache.get_or_load("gold", key, lambda: [_plain(r) for r in read()] or None)
        return rows or []

    def _gold(self, name: str, document: dict[str, Any]) -> list[dict[str, Any]]:
        did, version = document["id"], document["version"]
        return self._cached_gold(
            gold_rows_key(name, did, version),
            lambda: gold.read_rows(self.settings, name, document_id=did, version=version),
        )

    # ---- asking for material -------------------------------------------------------------------
    def request(self, kind: Literal["notes", "quiz"], document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        """Starts generating ``kind`` for the newest indexed version, or points to what exists or
        runs already: one DAG run per document version (its run id is derived from the version),
        so a second request while it runs starts nothing new. Returns ``{"status": "ready" |
        "queued", "job": JobState | None}``."""
        document = self.document(document_id, principal)
        dag_id, table = GENERATION_DAGS[kind]
        self.cache.invalidate(gold_rows_key(table, document["id"], document["version"]))
        if self._gold(table, document):
            return {"status": "ready", "job": None}
        run_id = f"{kind}__{document['id']}__v{document['version']}"
        claim = self.jobs.redis.key(f"study-run:{run_id}")
        job = self.jobs.new(
            kind=kind, user_id=str(principal.user_id), course_id=document["course_id"], document_id=document["id"]
        )
        try:
            holder = self.jobs.redis.call(
                "study_run_claim", lambda c: c.set(claim, job.job_id, nx=True, ex=24 * 3600, get=True)
            )
        except RedisDown as exc:
            raise ServiceUnavailable("Generation cannot be queued while Redis is down; try again shortly.") from exc
        if holder is not None:  # a run for this version was asked for before: follow its job
            existing = self.jobs.records.job(holder) or self.jobs.redis.call(
                "job_get", lambda _c: self.jobs.reporter.get(holder)
            )
            if existing is not None and existing.status != "failed":
                return {"status": "queued", "job": existing}
            run_id = f"{run_id}__{job.job_id}"  # the earlier run failed: a new run, a new job
            self.jobs.redis.call("study_run_claim", lambda c: c.set(claim, job.job_id, ex=24 * 3600))
        self.jobs.records.save_job(job)
        self.jobs.announce(job)
        try:
            orchestrator = self.orchestrator()
            # A run of a paused DAG waits for ever: a DAG paused by hand (or created paused by an
            # older configuration) is resumed, since a student is now waiting on it.
            orchestrator.unpause(dag_id)
            orchestrator.trigger(dag_id, run_id=run_id, conf={"document_id": document["id"], "job_id": job.job_id})
        except Exception as exc:  # Airflow unreachable or refusing: the job says why, the caller gets 503
            reason = f"could not start generation: {type(exc).__name__}: {exc}"[:500]
            failed = job.model_copy(update={"status": "failed", "error": reason, "updated_at": time.time()})
            self.jobs.records.save_job(failed)
            self.jobs.announce(failed)
            self.jobs.redis.call("study_run_release", lambda c: c.delete(claim))
            raise ServiceUnavailable("The scheduler is unavailable; nothing was queued. Try again shortly.") from exc
        return {"status": "queued", "job": job}

    # ---- notes ---------------------------------------------------------------------------------
    def notes(self, document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        document = self.document(document_id, principal)
        row = gold.latest(self._gold(gold.GOLD_NOTES, document))
        if row is None:
            raise NotReady("Notes for this document are not generated yet; POST to this URL to ask for them.")
        self.analytics.emit(EVENT_NOTES_VIEWED, user_id=str(principal.user_id), course_id=str(document["course_id"]),
                            document_id=str(document["id"]), version=document["version"])  # fmt: skip
        return {"document_id": document["id"], "version": document["version"], **json.loads(row["payload"])}

    # ---- quizzes -------------------------------------------------------------------------------
    def quiz(self, document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        """The document's quiz without its key."""
        document = self.document(document_id, principal)
        quiz = gold.latest(self._gold(gold.GOLD_QUIZZES, document))
        if quiz is None:
            raise NotReady("A quiz for this document is not generated yet; POST to this URL to ask for one.")
        items = sorted(
            (i for i in self._gold(gold.GOLD_QUIZ_ITEMS, document) if i["quiz_id"] == quiz["quiz_id"]),
            key=lambda i: i["position"],
        )
        self.analytics.emit(EVENT_QUIZ_STARTED, user_id=str(principal.user_id), course_id=str(document["course_id"]),
                            quiz_id=quiz["quiz_id"], document_id=str(document["id"]))  # fmt: skip
        return {
            "quiz_id": quiz["quiz_id"],
            "document_id": document["id"],
            "version": document["version"],
            "generator": quiz["generator"],
            "quality": {
                "answerability": quiz["answerability"],
                "duplicate_rate": quiz["duplicate_rate"],
                "flagged": quiz["flagged"],
                "reasons": json.loads(quiz["reasons"]),
            },
            "items": [
                {
                    "item_id": i["item_id"],
                    "kind": i["kind"],
                    "question": i["question"],
                    "options": json.loads(i["options"]),
                    "page": i["page"],
                    "difficulty": i["difficulty"],
                }
                for i in items
            ],
        }

    def grade(
        self,
        quiz_id: str,
        principal: Principal,
        *,
        answers: list[dict[str, Any]],
        attempt_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Grades an attempt by option id (never by display text), stores it on the student's
        shard and returns the score with the correct answers and explanations."""
        items = self._cached_gold(
            quiz_items_key(quiz_id), lambda: gold.read_where(self.settings, gold.GOLD_QUIZ_ITEMS, quiz_id=quiz_id)
        )
        if not items:
            raise NotFound("No quiz with this id.")
        course_id = items[0]["course_id"]
        self.courses.require_visible(course_id, principal)
        by_item = {i["item_id"]: i for i in items}
        chosen: dict[str, str] = {}
        for answer in answers:
            item = by_item.get(answer["item_id"])
            if item is None:
                raise UnprocessableAnswer(f"Item {answer['item_id']} is not in this quiz.")
            if answer["option_id"] not in {o["option_id"] for o in json.loads(item["options"])}:
                raise UnprocessableAnswer(f"Option {answer['option_id']} is not an option of item {item['item_id']}.")
            chosen[item["item_id"]] = answer["option_id"]
        seconds = {a["item_id"]: a.get("seconds") for a in answers}
        graded = []
        for item in sorted(items, key=lambda i: i["position"]):
            picked = chosen.get(item["item_id"])
            graded.append(
                {
                    "item_id": item["item_id"],
                    "chosen_option_id": picked,
                    "correct_option_id": item["correct_option_id"],
                    "correct": picked == item["correct_option_id"],
                    "explanation": item["explanation"],
                    "page": item["page"],
                    "seconds": seconds.get(item["item_id"]),
                }
            )
        score = sum(g["correct"] for g in graded)
        stored = self.records.add_attempt(
            attempt_id=attempt_id or uuid.uuid4(),
            user_id=str(principal.user_id),
            course_id=course_id,
            document_id=items[0]["document_id"],
            version=items[0]["version"],
            quiz_id=quiz_id,
            score=score,
            max_score=len(graded),
            answers=graded,
        )
        self.analytics.emit(
            "quiz.attempted",
            user_id=str(principal.user_id),
            course_id=course_id,
            attempt_id=str(stored["id"]),
            quiz_id=quiz_id,
            document_id=items[0]["document_id"],
            version=items[0]["version"],
            score=float(stored["score"]),
            max_score=float(stored["max_score"]),
            answered=len(chosen),
        )
        return {
            "attempt_id": str(stored["id"]),
            "quiz_id": quiz_id,
            "score": stored["score"],
            "max_score": stored["max_score"],
            "items": stored["answers"],
            "created_at": stored["created_at"],
        }

    # ---- flashcards ----------------------------------------------------------------------------
    def _course_cards(self, course_id: str) -> list[dict[str, Any]]:
        return self._cached_gold(
            course_cards_key(course_id),
            lambda: gold.read_where(self.settings, gold.GOLD_FLASHCARDS, course_id=course_id),
        )

    def due_cards(self, course_id: uuid.UUID, principal: Principal, *, limit: int, now: datetime) -> dict[str, Any]:
        """The caller's cards of a course that are due at ``now`` (never reviewed ones first)."""
        self.courses.require_visible(course_id, principal)
        cards = self._course_cards(str(course_id))
        states = self.records.card_states(user_id=str(principal.user_id), course_id=str(course_id))
        due = []
        for card in cards:
            state = states.get(card["card_id"])
            due_at = state["due"] if state else None
            if due_at is None or due_at <= now:
                due.append((due_at or datetime.min.replace(tzinfo=UTC), card, state))
        due.sort(key=lambda entry: (entry[0], entry[1]["card_id"]))
        return {
            "course_id": str(course_id),
            "due": len(due),
            "total": len(cards),
            "cards": [
                {
                    "card_id": card["card_id"],
                    "front": card["front"],
                    "back": card["back"],
                    "page": card["page"],
                    "document_id": card["document_id"],
                    "due_at": state["due"].isoformat() if state else None,
                    "reviews": state["reviews"] if state else 0,
                }
                for _due, card, state in due[:limit]
            ],
        }

    def review(
        self, card_id: str, principal: Principal, *, rating: srs.Rating, review_id: uuid.UUID | None, now: datetime
    ) -> dict[str, Any]:
        """Records a review and moves the card's FSRS state; a repeated review id changes nothing."""
        card = self._card(card_id, principal)
        user_id = str(principal.user_id)
        current = self.records.card_state(user_id=user_id, card_id=card_id)
        state, due_after = srs.review(state_json(current["state"]) if current else None, rating, at=now)
        recorded = self.records.record_review(
            review_id=review_id or uuid.uuid4(),
            user_id=user_id,
            card_id=card_id,
            course_id=card["course_id"],
            rating=srs.RATING_VALUES[rating],
            reviewed_at=now,
            due_before=current["due"] if current else None,
            state_after=state,
            due_after=due_after,
        )
        after = self.records.card_state(user_id=user_id, card_id=card_id)
        assert after is not None  # recorded now or by the earlier request with this review id
        return {
            "card_id": card_id,
            "recorded": recorded,
            "due_at": after["due"].isoformat(),
            "reviews": after["reviews"],
            "stability": state_json(after["state"]).get("stability"),
        }

    def _card(self, card_id: str, principal: Principal) -> dict[str, Any]:
        rows = self._cached_gold(
            card_key(card_id), lambda: gold.read_where(self.settings, gold.GOLD_FLASHCARDS, card_id=card_id)
        )
        if not rows:
            raise NotFound("No card with this id.")
        self.courses.require_visible(rows[0]["course_id"], principal)
        return rows[0]

    def deck(self, course_id: uuid.UUID, principal: Principal) -> bytes:
        """The course's flashcards as an Anki ``.apkg``."""
        course, _role = self.courses.require_visible(course_id, principal)
        cards = self._course_cards(str(course_id))
        if not cards:
            raise NotReady("This course has no flashcards yet.")
        return anki.deck_bytes(course_id=str(course_id), title=course["title"], cards=cards)
