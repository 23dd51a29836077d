"""The LLM generator: any LangChain chat model (``ChatOpenAI`` on an OpenAI-compatible endpoint
in production) answering versioned prompts from ``study/prompts/`` with JSON.

Each answer is parsed with pydantic and checked against the document (cited pages inside the
section, terms present on their pages). An invalid answer is sent back with the reason, at most
``retries`` times; after that the step fails with ``GenerationError``: never half-valid data.
Token counts come from the responses' ``usage_metadata`` (nothing is counted locally: tokenizer
files cannot be downloaded offline).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from study.errors import GenerationError
from study.models import CitedSentence, DocumentText, KeyTerm, PageText, Section, SectionNote
from study.text import contains_term, squash

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).parent / "prompts"
PROMPT_NAMES = ("system", "section_notes", "overview", "key_terms", "question")
Answer = TypeVar("Answer")


@cache
def prompt(name: str) -> str:
    """The text of ``study/prompts/<name>.txt``."""
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8")


def prompts_digest() -> str:
    """A short hash of every prompt: editing a prompt makes a new generator version."""
    digest = hashlib.sha256()
    for name in PROMPT_NAMES:
        digest.update(prompt(name).encode())
    return digest.hexdigest()[:10]


# ---- the JSON the prompts ask for
class _Answer(BaseModel):
    model_config = {"extra": "ignore"}


class _Sentence(_Answer):
    text: str = Field(min_length=1)
    pages: list[int] = Field(min_length=1)


class _Sentences(_Answer):
    sentences: list[_Sentence] = Field(min_length=1)


class _Term(_Answer):
    term: str = Field(min_length=1)
    definition: str = Field(min_length=1)
    pages: list[int] = Field(min_length=1)


class _Terms(_Answer):
    terms: list[_Term] = Field(min_length=1)


class _Question(_Answer):
    question: str = Field(min_length=1)


def json_payload(raw: str) -> str:
    """The JSON object inside an answer (models like to wrap it in a markdown fence)."""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer holds no JSON object")
    return raw[start : end + 1]


def _content(message: Any) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)


def _cited(sentences: Sequence[_Sentence], allowed: set[int], where: str) -> list[CitedSentence]:
    out = []
    for sentence in sentences:
        outside = sorted(set(sentence.pages) - allowed)
        if outside:
            raise ValueError(f"sentence {sentence.text[:60]!r} cites pages {outside} outside {where}")
        out.append(CitedSentence(text=squash(sentence.text), pages=sorted(set(sentence.pages))))
    return out


def _notes_listing(section_notes: Sequence[SectionNote]) -> str:
    lines = []
    for note in section_notes:
        lines.append(f"## {note.section.title} (pages {note.section.page_start}-{note.section.page_end})")
        lines.extend(f"- {s.text} [pages {', '.join(map(str, s.pages))}]" for s in note.sentences)
    return "\n".join(lines)


class LLMGenerator:
    """Study material written by a chat model, validated before it is returned."""

    name = "llm"

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        retries: int = 2,
        overview_sentences: int = 8,
        max_terms: int = 20,
    ) -> None:
        self.chat_model = chat_model
        self.retries = retries
        self.overview_sentences = overview_sentences
        self.max_terms = max_terms
        model = (
            getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None) or type(chat_model).__name__
        )
        self.version = f"llm:{model}:{prompts_digest()}"
        self.usage: dict[str, int] = {
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "calls": 0,
            "retries": 0,
        }

    def _record(self, message: Any) -> None:
        self.usage["calls"] += 1
        usage = getattr(message, "usage_metadata", None) or {}
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            self.usage[key] += int(usage.get(key, 0) or 0)

    def ask(self, step: str, text: str, parse: Callable[[str], Answer]) -> Answer:
        """Sends ``text`` under the system prompt; returns ``parse(answer)`` or, after ``retries``
        invalid answers, raises ``GenerationError`` carrying the last raw answer."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        messages: list[BaseMessage] = [SystemMessage(prompt("system")), HumanMessage(text)]
        raw, problem = "", ""
        for attempt in range(self.retries + 1):
            answer = self.chat_model.invoke(messages)
            self._record(answer)
            raw = _content(answer)
            try:
                return parse(raw)
            except (ValidationError, ValueError) as exc:
                # ValidationError is a ValueError too: test it first for the shorter message.
                problem = _brief(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
                log.warning(
                    "study %s: invalid answer (attempt %d): %s; answer: %.500r", step, attempt + 1, problem, raw
                )
                if attempt < self.retries:
                    self.usage["retries"] += 1
                    # The model sees its own answer and what was wrong with it: a second
                    # chance that names the mistake fixes far more than a blind resend.
                    messages = [
                        *messages,
                        AIMessage(raw),
                        HumanMessage(f"That answer is invalid: {problem}. Answer again with the JSON object only."),
                    ]
        raise GenerationError(
            f"study {step}: no valid answer after {self.retries + 1} attempts ({problem}); last answer: {raw[:1000]!r}",
            step=step,
            raw=raw,
        )

    # ---- the generator steps
    def section_notes(self, section: Section, pages: Sequence[PageText]) -> list[CitedSentence]:
        """Notes of one section from its page-numbered text; citations must stay in the section."""
        present = [page for page in pages if page.text.strip()]
        if not present:
            return []
        allowed = {page.number for page in present}
        text = "\n\n".join(f"[page {page.number}]\n{page.text.strip()}" for page in present)
        count = min(8, max(2, math.ceil((section.page_end - section.page_start + 1) / 2)))
        request = prompt("section_notes").format(
            title=section.title, page_start=section.page_start, page_end=section.page_end, count=count, text=text
        )
        where = f"the section's pages {section.page_start}-{section.page_end}"

        def parse(raw: str) -> list[CitedSentence]:
            return _cited(_Sentences.model_validate_json(json_payload(raw)).sentences, allowed, where)

        return self.ask("section_notes", request, parse)

    def overview(self, section_notes: Sequence[SectionNote]) -> list[CitedSentence]:
        """A document overview citing only pages the section notes cite."""
        allowed = {page for note in section_notes for s in note.sentences for page in s.pages}
        if not allowed:
            return []
        request = prompt("overview").format(count=self.overview_sentences, notes=_notes_listing(section_notes))

        def parse(raw: str) -> list[CitedSentence]:
            sentences = _Sentences.model_validate_json(json_payload(raw)).sentences
            return _cited(sentences[: self.overview_sentences], allowed, "the pages of the notes")

        return self.ask("overview", request, parse)

    def key_terms(self, doc: DocumentText, sections: Sequence[SectionNote]) -> list[KeyTerm]:
        """Key terms with definitions; each term must appear in its definition and on a cited page
        (a quiz key that is not in the text could never be checked against it)."""
        if not any(note.sentences for note in sections):
            return []
        texts = {page.number: page.text for page in doc.pages}
        request = prompt("key_terms").format(
            title=doc.title or "untitled", count=self.max_terms, notes=_notes_listing(sections)
        )

        def parse(raw: str) -> list[KeyTerm]:
            terms: list[KeyTerm] = []
            seen: set[str] = set()
            for item in _Terms.model_validate_json(json_payload(raw)).terms[: self.max_terms]:
                term = squash(item.term)
                definition = _cited([_Sentence(text=item.definition, pages=item.pages)], set(texts), "the document")[0]
                if not contains_term(definition.text, term):
                    raise ValueError(f"the definition of {term!r} does not contain the term")
                if not any(contains_term(texts[page], term) for page in definition.pages):
                    raise ValueError(f"the term {term!r} is not on its cited pages {definition.pages}")
                if term.lower() not in seen:
                    seen.add(term.lower())
                    terms.append(KeyTerm(term=term, definition=definition))
            return terms

        return self.ask("key_terms", request, parse)

    def question_for(self, sentence: CitedSentence, term: str) -> str:
        """A question stem whose answer is ``term`` and which does not give it away."""
        request = prompt("question").format(term=term, page=sentence.pages[0], sentence=sentence.text)

        def parse(raw: str) -> str:
            question = squash(_Question.model_validate_json(json_payload(raw)).question)
            if contains_term(question, term):
                raise ValueError(f"the question gives the answer {term!r} away")
            return question

        return self.ask("question", request, parse)


def _brief(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{len(errors)} validation error(s), first at {where or 'top'}: {first.get('msg')}"
