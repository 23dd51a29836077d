"""Schemathesis against the OpenAPI spec of the running app: real uvicorn on a loopback port, the
session's private shards, Redis, Kafka and object store, an authenticated instructor (her access
token in the Authorization header) and her real course, document, job, quiz and card as the path
ids (so the fuzzer reaches the handlers, not only the 404s).

Every response must be no 5xx and match its documented status codes, content type, headers and
schema (``application/problem+json`` for errors). Bounded for CI: ``FUZZ_MAX_EXAMPLES`` cases per
operation and phase (env ``LAKEHOUSE_FUZZ_MAX_EXAMPLES``, default 40), one worker, a fixed seed
(env ``LAKEHOUSE_FUZZ_SEED``). Prints the cases run and their outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.api.api_testkit import LiveServer, derive
from tests.integration.security.conftest import World

FUZZ_MAX_EXAMPLES = int(os.environ.get("LAKEHOUSE_FUZZ_MAX_EXAMPLES", "40"))
FUZZ_SEED = int(os.environ.get("LAKEHOUSE_FUZZ_SEED", "7"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
)


def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(world: World, tmp_path: Path) -> None:
    # The security tests' world (an indexed document with notes, a quiz and cards in gold) served
    # by uvicorn: the same databases, Redis prefix, lake and signing key, so its tokens hold.
    settings = derive(world.settings, api={"max_upload_bytes": 2 * 1024 * 1024})
    owner, course = world.accounts["instructor_owner"], world.own
    assert owner is not None
    with LiveServer(settings) as server:
        config = tmp_path / "schemathesis.toml"
        ids = {"course_id": course.id, "document_id": course.document_id, "job_id": course.job_id,
               "quiz_id": course.quiz_id, "card_id": course.card_id}  # fmt: skip
        config.write_text("[parameters]\n" + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items()))
        report = tmp_path / "report.json"
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
            f"{server.url}/openapi.json",
            "--header", f"Authorization: Bearer {owner.access_token}",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(FUZZ_MAX_EXAMPLES),
            "--seed", str(FUZZ_SEED),
            "--workers", "1",
            "--phases", "examples,coverage,fuzzing",
            "--request-timeout", "20",
            "--report", "json", "--report-json-path", str(report),
            "--no-color",
        ]  # fmt: skip
        started = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        seconds = time.monotonic() - started
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases = summary.get("test_cases", {})
    print(
        f"schemathesis {summary.get('schemathesis_version')}: {summary.get('operations', {}).get('tested')} operations,"
        f" {cases.get('generated')} cases in {seconds:.0f} s; with failures {cases.get('with_failures')},"
        f" unique failures {cases.get('unique_failures')}, errored {cases.get('errored')}; exit {run.returncode}"
    )
    for failure in summary.get("failures", []):
        print(f"  {failure['count']} x {failure['title']} ({failure['code']}): {failure['operations']}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-3000:]
    assert cases.get("generated", 0) > 0 and not summary.get("failures") and not summary.get("errors")
