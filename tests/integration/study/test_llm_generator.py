"""The LLM generator through the real ``langchain_openai.ChatOpenAI`` client against a real HTTP
server speaking the OpenAI chat-completions protocol (no client mocks)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from core.settings import LLMSettings
from study.generators import GenerationError, LLMGenerator, StudyGenerator, build_generator
from study.models import CitedSentence, DocumentText, PageText
from study.notes import generate_notes
from study.quality import citation_precision
from study.sections import split_sections
from tests.integration.study.openai_stub import USAGE, serve

PAGES = {
    1: "Delta Lake stores tables as Parquet files plus a transaction log. Each commit adds one JSON entry.",
    2: "Readers use a snapshot of the log, so they never see half a commit. Writers retry on conflicts.",
    3: "Kafka keeps records in partitions, which are ordered logs. Consumers track their offsets.",
    4: "A consumer group shares the partitions of a topic. Rebalancing moves partitions between members.",
}


@pytest.fixture
def doc() -> DocumentText:
    return DocumentText(
        document_id="doc-llm",
        version=1,
        course_id="c",
        title="Lakes and logs",
        pages=[PageText(number=n, text=t) for n, t in PAGES.items()],
        chunks=[],
    )


class NotFound(Exception):
    pass


def _last_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def _first_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def good_answer(body: dict[str, Any]) -> str:
    """A well-behaved model: quotes the given text and cites the right pages."""
    task = _first_user(body)
    if task.startswith("Task: study notes"):
        pages = re.findall(r"\[page (\d+)\]\n(.+?)(?=\n\n\[page |\Z)", task, re.S)
        return json.dumps({"sentences": [{"text": text.split(". ")[0] + ".", "pages": [int(n)]} for n, text in pages]})
    notes = re.findall(r"^- (.+) \[pages ([\d, ]+)\]$", task, re.M)
    if task.startswith("Task: an overview"):
        return json.dumps({"sentences": [{"text": t, "pages": [int(p) for p in ps.split(",")]} for t, ps in notes[:2]]})
    if task.startswith("Task: the key terms"):
        terms = []
        for text, pages in notes:
            term = max(re.findall(r"[A-Za-z]+", text), key=len)
            terms.append({"term": term, "definition": text, "pages": [int(p) for p in pages.split(",")]})
        return "```json\n" + json.dumps({"terms": terms}) + "\n```"  # fenced, as models often do
    if task.startswith("Task: one multiple-choice"):
        return json.dumps({"question": "Which structure holds the records of a topic in order?"})
    raise NotFound(task[:80])


def _generator(base_url: str) -> StudyGenerator:
    settings = LLMSettings(provider="openai", base_url=base_url, model="stub-model", api_key="test-key", timeout_s=10)
    return build_generator(settings, embedder=None)  # type: ignore[arg-type]  # unused by the LLM path


def test_llm_generator_writes_cited_notes_from_valid_answers(doc: DocumentText):
    with serve(good_answer) as server:
        generator = _generator(server.base_url)
        assert isinstance(generator, LLMGenerator) and generator.version.startswith("llm:stub-model:")
        progress: list[tuple[int, int]] = []
        notes = generate_notes(doc, generator=generator, section_pages=2, progress=lambda d, t: progress.append((d, t)))
    assert progress == [(1, 2), (2, 2)]
    # 2 sections + overview + key terms, one request each (all answers valid)
    assert len(server.requests) == 4
    assert {body["model"] for body in server.requests} == {"stub-model"}
    assert "[page 1]" in _first_user(server.requests[0]) and "[page 3]" in _first_user(server.requests[1])
    assert [[s.pages for s in note.sentences] for note in notes.sections] == [[[1], [2]], [[3], [4]]]
    assert notes.quality.citation_precision == 1.0 and notes.quality.section_coverage == 1.0
    assert len(notes.overview) == 2 and notes.key_terms and notes.generator == "llm"
    assert generator.usage["calls"] == 4
    assert generator.usage["input_tokens"] == 4 * USAGE["prompt_tokens"]
    assert generator.usage["output_tokens"] == 4 * USAGE["completion_tokens"]
    assert generator.usage["total_tokens"] == 4 * USAGE["total_tokens"]


def test_llm_generator_retries_invalid_json_then_fails_cleanly(doc: DocumentText):
    with serve(lambda body: "Sure! Here are your notes: - Delta Lake is great") as server:
        generator = _generator(server.base_url)
        with pytest.raises(GenerationError) as failure:
            generate_notes(doc, generator=generator, section_pages=2)
    assert len(server.requests) == 3  # the first answer and two retries, then the first section fails
    assert failure.value.step == "section_notes"
    assert "after 3 attempts" in str(failure.value) and "Here are your notes" in str(failure.value)
    assert failure.value.raw.startswith("Sure!")
    # each retry shows the model its answer and what was wrong with it
    retry = server.requests[2]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "no JSON object" in retry[-1]["content"]
    assert generator.usage["calls"] == 3 and generator.usage["retries"] == 2


def test_llm_generator_rejects_pages_outside_the_section_then_accepts_a_fixed_answer(doc: DocumentText):
    def answer(body: dict[str, Any]) -> str:
        if len(body["messages"]) == 2:  # first attempt: cites a page of another section
            return json.dumps({"sentences": [{"text": "Kafka keeps records in partitions.", "pages": [3]}]})
        return json.dumps({"sentences": [{"text": "Each commit adds one JSON entry.", "pages": [1]}]})

    with serve(answer) as server:
        generator = _generator(server.base_url)
        section = split_sections(doc, section_pages=2)[0]
        sentences = generator.section_notes(section, doc.pages[:2])
    assert sentences == [CitedSentence(text="Each commit adds one JSON entry.", pages=[1])]
    assert len(server.requests) == 2
    assert "outside the section's pages 1-2" in server.requests[1]["messages"][-1]["content"]
    assert citation_precision(sentences[0], {n: t for n, t in PAGES.items()}) == 1.0


def test_llm_question_never_gives_the_answer_away(doc: DocumentText):
    answers = iter(['{"question": "What are partitions made of?"}', '{"question": "What are ordered logs called?"}'])
    fact = CitedSentence(text="Kafka keeps records in partitions, which are ordered logs.", pages=[3])
    with serve(lambda body: next(answers)) as server:
        question = _generator(server.base_url).question_for(fact, "partitions")
    assert question == "What are ordered logs called?"
    assert len(server.requests) == 2


def test_llm_quiz_asks_the_model_for_mcq_stems_only():
    from core.settings import EmbeddingSettings
    from processing.embedding import get_embedder
    from study.generators import OfflineGenerator
    from study.quiz import generate_quiz
    from tests.unit.study.course_text import course_document

    course = course_document()
    embedder = get_embedder(EmbeddingSettings(precision="int8"))
    notes = generate_notes(course, generator=OfflineGenerator(embedder))
    stems = iter(f'{{"question": "Stem number {n}: which concept is described on its page?"}}' for n in range(1, 99))
    with serve(lambda body: next(stems)) as server:
        quiz = generate_quiz(course, notes, generator=_generator(server.base_url), embedder=embedder, items=4)
    mcq = [item for item in quiz.items if item.kind == "mcq"]
    assert len(quiz.items) == 4 and len(mcq) == 2
    assert len(server.requests) == 2  # cloze items are built without the model
    assert [item.question for item in mcq] == [
        f"Stem number {n}: which concept is described on its page?" for n in (1, 2)
    ]
    assert quiz.generator == "llm" and quiz.quality.answerability == 1.0
