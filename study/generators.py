"""The generator interface the map-reduce of study material calls, and the choice between the
offline generator and an OpenAI-compatible LLM, made from settings only: DAG code never knows
which one runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import SecretStr

from study.errors import GenerationError
from study.llm import LLMGenerator
from study.models import CitedSentence, DocumentText, KeyTerm, PageText, Section, SectionNote
from study.offline import OfflineGenerator, TextEncoder

if TYPE_CHECKING:
    from core.settings import LLMSettings

__all__ = [
    "GenerationError",
    "LLMGenerator",
    "OfflineGenerator",
    "StudyGenerator",
    "TextEncoder",
    "build_generator",
]

# HTTP-level retries of the OpenAI client (timeouts, 429, 5xx); invalid answers are retried
# separately by LLMGenerator.
LLM_HTTP_RETRIES = 2


@runtime_checkable
class StudyGenerator(Protocol):
    """The steps of notes and quiz generation. ``version`` goes into every stable id, so material
    from another generator (or prompt set, or model) never overwrites this one's rows."""

    name: str
    version: str
    usage: dict[str, int]

    def section_notes(self, section: Section, pages: Sequence[PageText]) -> list[CitedSentence]:
        """Notes of one section (map step), each sentence citing pages of that section."""
        ...

    def overview(self, section_notes: Sequence[SectionNote]) -> list[CitedSentence]:
        """The document overview from the section notes (reduce step)."""
        ...

    def key_terms(self, doc: DocumentText, sections: Sequence[SectionNote]) -> list[KeyTerm]:
        """Key terms, each with a definition sentence citing its page(s)."""
        ...

    def question_for(self, sentence: CitedSentence, term: str) -> str:
        """A multiple-choice stem asking for ``term``, answerable from ``sentence``."""
        ...


def build_generator(llm: LLMSettings, embedder: TextEncoder) -> StudyGenerator:
    """The generator the settings ask for: ``offline`` (default) or an OpenAI-compatible endpoint."""
    if llm.provider == "offline":
        return OfflineGenerator(embedder)
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=llm.base_url,
        # Local OpenAI-compatible servers accept any key, but the client insists on one.
        api_key=llm.api_key if llm.api_key.get_secret_value() else SecretStr("unused"),
        model=llm.model,
        timeout=llm.timeout_s,
        max_retries=LLM_HTTP_RETRIES,
        temperature=0,
    )
    return LLMGenerator(chat)
