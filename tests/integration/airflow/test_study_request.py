"""The seed's heavy request end to end, and the student loop on top of it, with everything real:
a book uploaded through the API and indexed by the stream; a private Airflow (own state dir,
port, metadata database) running the project's DAGs; the student asks for notes over HTTP,
follows the job over the notifications WebSocket, reads the notes; then takes the quiz, is
graded by option id, reviews flashcards (FSRS moves the due date) and downloads the Anki deck."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator

import httpx
import pytest
import websockets

from deploy.airflow import LocalAirflow
from orchestration.airflow_api import AirflowClient
from processing import samples
from tests.integration.airflow.test_local_airflow import _create_database, _free_port_below_32768
from tests.integration.api.api_testkit import LiveServer, create_course, derive, sign_up

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.spark]


def _as_environment(settings) -> dict[str, str]:
    """What the DAG tasks (other processes) need to see the same stores as this test."""
    return {
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_POSTGRES__SHARDS": str(settings.postgres.shards),
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_POSTGRES__AIRFLOW_DB": settings.postgres.airflow_db,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "LAKEHOUSE_LAKE__ROOT": settings.lake.root,
        "LAKEHOUSE_LAKE__CHECKPOINT_ROOT": settings.lake.checkpoint_root,
        "LAKEHOUSE_LANCEDB__URI": settings.lancedb.uri,
        "LAKEHOUSE_OBJECT_STORE__LOCAL_ROOT": str(settings.object_store.local_root),
        "LAKEHOUSE_API__JWT_SECRET": settings.api.jwt_secret.get_secret_value(),
        "LAKEHOUSE_AIRFLOW__PORT": str(settings.airflow.port),
    }


@pytest.fixture(scope="module")
def world(api_settings, spark, tmp_path_factory) -> Iterator[dict]:
    from spark_jobs.ingest_documents import FanOutSink, RedisKafkaStatusSink, run_available_now
    from spark_jobs.status_postgres import PostgresStatusSink

    run = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("study-request")
    settings = derive(
        api_settings,
        kafka={"topic_prefix": f"s{run}."},
        lake={"root": str(root / "lake"), "checkpoint_root": str(root / "checkpoints")},
        lancedb={"uri": str(root / "lancedb")},
        object_store={"local_root": root / "objects"},
        stack={"state_dir": root / "state"},
        airflow={"port": _free_port_below_32768()},
        postgres={"airflow_db": f"airflow_test_{run}"},
    )
    environment = _as_environment(settings)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    _create_database(settings, settings.postgres.airflow_db)
    airflow = LocalAirflow(settings)
    try:
        started = time.perf_counter()
        airflow.up()
        print(f"\n[study] airflow up in {time.perf_counter() - started:.1f} s")
        login = airflow.login()
        with AirflowClient(login.url, username=login.user, password=login.password) as airflow_client:
            # New DAGs run their latest schedule at once (the safety net). Let those runs find
            # nothing and finish before the book exists, so the student's request does the work.
            _wait_for_first_runs(airflow_client, ("summarise_documents", "generate_quizzes"))
            with LiveServer(settings) as server:
                client = httpx.Client(base_url=server.url, timeout=30)
                owner = sign_up(client, role="instructor")
                student = sign_up(client)
                course = create_course(client, owner, title="Streaming Lakehouses")
                joined = client.post(
                    "/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers
                )
                assert joined.status_code == 200, joined.text
                uploaded = client.post(
                    f"/v1/courses/{course['id']}/documents",
                    files={"files": ("book.pdf", samples.course_book(30).pdf, "application/pdf")},
                    headers=owner.headers,
                )
                assert uploaded.status_code == 202, uploaded.text
                document_id = uploaded.json()["jobs"][0]["document_id"]
                live, durable = RedisKafkaStatusSink(settings), PostgresStatusSink(settings)
                try:
                    run_available_now(settings, spark=spark, sink=FanOutSink(durable, live))
                finally:
                    live.close()
                    durable.close()
                yield {
                    "settings": settings,
                    "server": server,
                    "client": client,
                    "student": student,
                    "course": course,
                    "document_id": document_id,
                    "airflow": airflow_client,
                }
    finally:
        airflow.down()
        _create_database(settings, settings.postgres.airflow_db, drop=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _wait_for_first_runs(client: AirflowClient, dag_ids: tuple[str, ...], *, timeout_s: float = 240.0) -> None:
    """Until each DAG has run once and no run is unfinished (after 90 s without any run of a DAG,
    it is taken as not scheduled yet)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if set(dag_ids) <= {dag.dag_id for dag in client.list_dags()}:
            runs = [run for dag_id in dag_ids for run in client.list_dag_runs(dag_id)]
            unfinished = [run for run in runs if not run.finished]
            everyone_ran = {run.dag_id for run in runs} >= set(dag_ids)
            if not unfinished and (everyone_ran or time.monotonic() - started > 90):
                return
        time.sleep(2)
    raise TimeoutError(f"the first runs of {dag_ids} did not finish in {timeout_s:.0f} s")


def _follow(world, job_id: str, *, timeout_s: float = 300.0) -> list[dict]:
    """The job's events from the notifications WebSocket, until it succeeds or fails."""
    url = f"ws://127.0.0.1:{world['server'].port}/v1/notifications?access_token={world['student'].access_token}"

    async def listen() -> list[dict]:
        events: list[dict] = []
        async with websockets.connect(url) as ws:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
                jobs = message["jobs"] if message["type"] == "snapshot" else [message.get("job") or {}]
                for job in jobs:
                    if job.get("job_id") == job_id:
                        events.append(job)
                        if job["status"] in ("succeeded", "failed"):
                            return events
        raise TimeoutError(f"job {job_id} did not finish in {timeout_s} s; events: {events}")

    return asyncio.run(listen())


def _analytics(world, attempt_ids: set[str], timeout_s: float = 30.0) -> list[dict]:
    from core.events import TOPIC_ANALYTICS_EVENTS
    from streaming.kafka import json_consumer

    kafka = world["settings"].kafka
    consumer = json_consumer(kafka, kafka.topic(TOPIC_ANALYTICS_EVENTS), group_id=None)
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < len(attempt_ids) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            found += [
                m.value
                for m in records
                if m.value["name"] == "quiz.attempted" and m.value["properties"]["attempt_id"] in attempt_ids
            ]
    consumer.close()
    return found


def _ask(world, kind: str) -> httpx.Response:
    return world["client"].post(f"/v1/documents/{world['document_id']}/{kind}", headers=world["student"].headers)


def test_notes_requested_run_once_report_progress_and_are_served(world):
    client, headers = world["client"], world["student"].headers
    before = client.get(f"/v1/documents/{world['document_id']}/notes", headers=headers)
    assert before.status_code == 202 and before.json()["status"] == "not_ready"

    started = time.perf_counter()
    first = _ask(world, "notes")
    assert first.status_code == 202, first.text
    job = first.json()["job"]
    second = _ask(world, "notes")  # while it runs: the same job, no second DAG run
    assert second.status_code == 202 and second.json()["job"]["id"] == job["id"]

    events = _follow(world, job["id"])
    seconds = time.perf_counter() - started
    assert events[-1]["status"] == "succeeded", events[-1]
    progress = [e for e in events if e["status"] == "running" and e["pages_total"]]
    assert any(0 < e["pages_done"] < e["pages_total"] for e in progress), events
    done = [e["pages_done"] for e in progress]
    assert done == sorted(done)  # sections done never go down
    runs = world["airflow"].list_dag_runs("summarise_documents")
    assert [r.run_id for r in runs if world["document_id"] in r.run_id] == [f"notes__{world['document_id']}__v1"]

    notes = client.get(f"/v1/documents/{world['document_id']}/notes", headers=headers)
    assert notes.status_code == 200, notes.text
    body = notes.json()
    assert body["sections"] and body["overview"] and body["key_terms"]
    assert all(s["pages"] for section in body["sections"] for s in section["sentences"])
    print(f"\n[study] notes: requested -> served in {seconds:.1f} s; quality {body['quality']}")
    again = _ask(world, "notes")
    assert again.status_code == 200 and again.json()["status"] == "ready"


def test_student_takes_the_quiz_reviews_cards_and_exports_the_deck(world):
    client, headers = world["client"], world["student"].headers
    asked = _ask(world, "quiz")
    # The DAGs' safety-net schedule may have made it already (200); otherwise follow the job.
    assert asked.status_code in (200, 202), asked.text
    if asked.status_code == 202:
        assert _follow(world, asked.json()["job"]["id"])[-1]["status"] == "succeeded"

    quiz = client.get(f"/v1/documents/{world['document_id']}/quiz", headers=headers)
    assert quiz.status_code == 200, quiz.text
    body = quiz.json()
    assert len(body["items"]) == 10 and "correct_option_id" not in json.dumps(body)
    # All wrong first (never the first option when it is right), graded by option id.
    wrong = client.post(
        f"/v1/quizzes/{body['quiz_id']}/attempts",
        json={"answers": [{"item_id": i["item_id"], "option_id": i["options"][0]["option_id"]} for i in body["items"]]},
        headers=headers,
    )
    assert wrong.status_code == 201, wrong.text
    key = {g["item_id"]: g["correct_option_id"] for g in wrong.json()["items"]}
    first_right = sum(i["options"][0]["option_id"] == key[i["item_id"]] for i in body["items"])
    assert wrong.json()["score"] == first_right
    right = client.post(
        f"/v1/quizzes/{body['quiz_id']}/attempts",
        json={"answers": [{"item_id": item, "option_id": option, "seconds": 3.5} for item, option in key.items()]},
        headers=headers,
    )
    assert right.json()["score"] == right.json()["max_score"] == 10
    assert all(g["explanation"] for g in right.json()["items"])
    # Each attempt went to the warehouse's topic, off the request's path.
    attempts = _analytics(world, {wrong.json()["attempt_id"], right.json()["attempt_id"]})
    assert sorted(e["properties"]["score"] for e in attempts) == sorted([float(first_right), 10.0])
    bogus = client.post(
        f"/v1/quizzes/{body['quiz_id']}/attempts",
        json={"answers": [{"item_id": body["items"][0]["item_id"], "option_id": "not-an-option"}]},
        headers=headers,
    )
    assert bogus.status_code == 422

    due = client.get(f"/v1/courses/{world['course']['id']}/reviews/due", headers=headers).json()
    assert due["due"] == due["total"] > 0
    card = due["cards"][0]
    review_id = str(uuid.uuid4())
    reviewed = client.post(f"/v1/cards/{card['card_id']}/reviews", json={"rating": "good", "review_id": review_id},
                           headers=headers)  # fmt: skip
    assert reviewed.status_code == 201 and reviewed.json()["recorded"] is True
    repeated = client.post(f"/v1/cards/{card['card_id']}/reviews", json={"rating": "good", "review_id": review_id},
                           headers=headers)  # fmt: skip
    assert repeated.json()["recorded"] is False and repeated.json()["reviews"] == 1  # a retry counts once
    later = client.get(f"/v1/courses/{world['course']['id']}/reviews/due", headers=headers).json()
    assert later["due"] == due["due"] - 1  # FSRS moved the reviewed card's due date into the future
    assert card["card_id"] not in {c["card_id"] for c in later["cards"]}

    deck = client.get(f"/v1/courses/{world['course']['id']}/cards.apkg", headers=headers)
    assert deck.status_code == 200 and deck.headers["content-type"] == "application/apkg"
    with zipfile.ZipFile(io.BytesIO(deck.content)) as archive, tempfile.TemporaryDirectory() as folder:
        archive.extract("collection.anki2", folder)
        with sqlite3.connect(f"{folder}/collection.anki2") as db:
            fronts = [row[0].split("\x1f")[0] for row in db.execute("SELECT flds FROM notes")]
    assert len(fronts) == due["total"] and card["front"] in fronts
