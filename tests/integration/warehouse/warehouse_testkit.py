"""A small, known world for the warehouse tests, written through the stores' own writers (no
ingestion stream: its cost buys nothing here): two courses, documents with their jobs (indexed at
known delays, one failed), a quiz in gold/quiz_items, graded attempts, flashcard reviews, and
analytics events sent through the API's publisher on Kafka."""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.settings import Settings
from tests.integration.shard_testkit import migrated_shards

OPTIONS = ("a", "b", "c", "d")


@dataclass
class World:
    settings: Settings
    courses: list[str]
    quiz_id: str
    items: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)  # the valid analytics events sent
    malformed: int = 0
    jobs: list[str] = field(default_factory=list)  # this world's ingestion job ids


def warehouse_settings(base: Settings, root: Path, run_id: str) -> Settings:
    """``base`` (private shards) with this run's lake, topics and embedded warehouse."""
    data = base.model_dump()
    data["kafka"]["topic_prefix"] = f"wh{run_id}."
    data["lake"].update(root=str(root / "lake"), checkpoint_root=str(root / "checkpoints"))
    data["warehouse"].update(dsn=f"chdb://{root / 'warehouse'}", postgres_overlap_s=0.0)
    return Settings(**data)


def build_world(settings: Settings, *, students: int = 8, seed: int = 7) -> World:
    from core.db import ShardedPostgres
    from core.jobs import JobState
    from lake import gold
    from records.courses import CourseRecords
    from records.documents import DocumentRecords
    from records.study import StudyRecords
    from study import srs

    rng = random.Random(seed)
    db = ShardedPostgres(settings.postgres)
    try:
        owner = uuid.uuid4()
        course_records, documents, study = CourseRecords(db), DocumentRecords(db), StudyRecords(db)
        courses = [str(course_records.create(owner_id=owner, title=f"Course {i}", description="")["id"])
                   for i in range(2)]  # fmt: skip
        # Documents: four searchable then indexed after known delays, one failed; all uploaded "now".
        now = time.time()
        delays = [(courses[0], 12.0, 40), (courses[0], 30.5, 300), (courses[1], 8.25, 12), (courses[1], 61.0, 500)]
        doc_ids, job_ids = [], []
        for index, (course_id, delay, pages) in enumerate([*delays, (courses[1], 3.0, 0)]):
            document_id = str(uuid.uuid4())
            doc_ids.append(document_id)
            job = JobState(job_id=str(uuid.uuid4()), kind="ingest_document", user_id=str(owner), course_id=course_id,
                           document_id=document_id, created_at=now, updated_at=now)  # fmt: skip
            job_ids.append(job.job_id)
            documents.insert_version(
                {"id": document_id, "course_id": course_id, "version": 1, "filename": f"d{index}.pdf",
                 "original_filename": f"d{index}.pdf", "sha256": f"{index:064x}", "size_bytes": 1000 + index,
                 "object_key": f"raw/{document_id}", "uploaded_by": str(owner)},
                job=job,
            )  # fmt: skip
            documents.transition(course_id=course_id, document_id=document_id, version=1, job_id=job.job_id,
                                 status="processing", at=now + 1, pages=pages or None)  # fmt: skip
            if index < len(delays):
                # Searchable (text first) half way, indexed (embeddings written) at the delay.
                assert documents.mark_searchable(course_id=course_id, job_id=job.job_id, at=now + delay / 2)
                documents.transition(course_id=course_id, document_id=document_id, version=1, job_id=job.job_id,
                                     status="indexed", at=now + delay, pages=pages, chunks=pages * 2)  # fmt: skip
            else:
                documents.transition(course_id=course_id, document_id=document_id, version=1, job_id=job.job_id,
                                     status="failed", at=now + delay, error="the PDF is encrypted")  # fmt: skip

        # A quiz of five items on the first course's first document (gold, as the study DAG writes it).
        quiz_id = f"quiz-{uuid.uuid4().hex[:8]}"
        run_at = datetime.now(UTC)
        key = {"document_id": doc_ids[0], "version": 1, "course_id": courses[0], "generator": "offline",
               "generator_version": "test-1", "run_at": run_at}  # fmt: skip
        items = [
            {"item_id": f"{quiz_id}-i{p}", "quiz_id": quiz_id, **key, "position": p, "kind": "mcq",
             "question": f"Question {p}?", "options": json.dumps([{"option_id": o, "text": f"option {o}"}
                                                                  for o in OPTIONS]),
             "correct_option_id": "a", "explanation": "", "source_chunk_id": "c", "page": p + 1, "section_id": "s",
             "difficulty": "medium", "fact": f"fact {p}"}
            for p in range(5)
        ]  # fmt: skip
        gold.replace_rows(settings, gold.GOLD_QUIZ_ITEMS, items, document_id=doc_ids[0], version=1,
                          generator_version="test-1")  # fmt: skip

        # Attempts: item 0 everyone gets right; the others by a student's skill, with some noise.
        for s in range(students):
            user_id = str(uuid.uuid4())
            skill = (s + 1) / (students + 1)
            for _attempt in range(1 + s % 2):
                graded = []
                for item in items:
                    correct = item["position"] == 0 or rng.random() < skill
                    picked = "a" if correct else rng.choice(OPTIONS[1:])
                    if item["position"] == 4 and rng.random() < 0.2:
                        picked, correct = None, False  # left unanswered
                    graded.append({"item_id": item["item_id"], "chosen_option_id": picked, "correct_option_id": "a",
                                   "correct": correct, "seconds": round(rng.uniform(2, 30), 2)})  # fmt: skip
                score = sum(g["correct"] for g in graded)
                study.add_attempt(attempt_id=uuid.uuid4(), user_id=user_id, course_id=courses[0],
                                  document_id=doc_ids[0], version=1, quiz_id=quiz_id, score=score,
                                  max_score=len(graded), answers=graded)  # fmt: skip
            # Flashcard reviews: three cards, reviewed twice, in one of the two courses.
            course_id = courses[s % 2]
            for card in range(3):
                state, due = None, None
                for review in range(2):
                    rating = "again" if rng.random() < 0.3 else "good"
                    at = datetime.now(UTC) + timedelta(seconds=review)
                    new_state, due_after = srs.review(state, rating, at=at)  # type: ignore[arg-type]
                    study.record_review(review_id=uuid.uuid4(), user_id=user_id, card_id=f"card-{card}",
                                        course_id=course_id, rating=srs.RATING_VALUES[rating], reviewed_at=at,
                                        due_before=due, state_after=new_state, due_after=due_after)  # fmt: skip
                    state, due = new_state, due_after
    finally:
        db.close()
    return World(settings=settings, courses=courses, quiz_id=quiz_id, items=items, jobs=job_ids)


def send_events(world: World) -> None:
    """Analytics events through the API's publisher (a real Kafka path), then two malformed ones."""
    from core.events import TOPIC_ANALYTICS_EVENTS
    from streaming.analytics import AnalyticsPublisher
    from streaming.kafka import ensure_topics, json_producer

    settings = world.settings
    ensure_topics(settings.kafka, [settings.kafka.topic(TOPIC_ANALYTICS_EVENTS)])
    publisher = AnalyticsPublisher(settings.kafka)
    searches = [(5, 0.0328), (0, None), (3, 0.0161), (10, 0.0301)]
    for index, (count, top) in enumerate(searches):
        user, course = f"searcher-{index % 2}", world.courses[index % 2]
        publisher.emit("search.performed", user_id=user, course_id=course, result_count=count, top_score=top,
                       mode="hybrid", query=f"query {index}")  # fmt: skip
        world.events.append({"name": "search.performed", "user_id": user, "course_id": course, "result_count": count,
                             "top_score": top, "query": f"query {index}"})  # fmt: skip
    publisher.emit("quiz.started", user_id="searcher-0", course_id=world.courses[0], quiz_id=world.quiz_id)
    world.events.append({"name": "quiz.started", "user_id": "searcher-0", "course_id": world.courses[0]})
    assert publisher.flush(20)
    publisher.close()
    producer = json_producer(settings.kafka)
    topic = settings.kafka.topic(TOPIC_ANALYTICS_EVENTS)
    bad = {"schema_version": 1, "event_id": "bad-1", "occurred_at": datetime.now(UTC).isoformat(),
           "event_type": "analytics", "name": "search.performed", "user_id": "u", "course_id": world.courses[0],
           "properties": {"top_score": 0.5}}  # fmt: skip
    producer.send(topic, key="bad", value=bad).get(timeout=10)
    producer.close()
    from kafka import KafkaProducer

    raw = KafkaProducer(bootstrap_servers=settings.kafka.servers)
    raw.send(topic, key=b"bad", value=b"{not json").get(timeout=10)
    raw.close()
    world.malformed = 2


@contextlib.contextmanager
def private_shards(base: Settings, shards: int = 1) -> Iterator[Settings]:
    """``base`` on its own freshly migrated shard databases (dropped afterwards): nothing another
    test writes can break a check that spans every row (references between facts and dimensions)."""
    data = base.model_dump()
    data["postgres"].update(shards=shards, shard_db_prefix=f"lakehouse_wh_{uuid.uuid4().hex[:8]}_", pool_max_size=2)
    with migrated_shards(Settings(**data)) as private:
        yield private
