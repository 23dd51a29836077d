"""The offline generator: extractive notes chosen by sentence embeddings, key terms by YAKE,
template questions. Deterministic, no network, no downloaded weights (the bundled MiniLM only).

Every sentence it returns is a sentence of the document, with the page(s) it was read from,
so its citations are exact by construction.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from study.models import CitedSentence, DocumentText, KeyTerm, PageText, Section, SectionNote
from study.sections import section_pages_of
from study.text import (
    STOPWORDS,
    blank_term,
    contains_term,
    is_statement,
    split_sentences,
    term_key,
    term_pattern,
    words,
)

if TYPE_CHECKING:
    import numpy as np

OFFLINE_VERSION = "offline-extractive-1"
_NOUN_CUES = frozenset(
    "a an the every each its their this these those of per many few all some any no our your "
    "another other same one two three several both".split()
)
_DEFINITION_CUES = (" is ", " are ", " means ", " refers to ", " defined as ", " called ")


class TextEncoder(Protocol):
    """What the generators need from an embedder (``processing.embedding.Embedder`` is one)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class CachedEncoder:
    """Encodes each distinct text once and then always returns that vector.

    The int8 model quantises activations per batch, so a text's vector shifts slightly with the
    texts batched alongside it; one cached vector per text keeps generation and scoring agreeing
    on every cosine.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` in their order."""
        import numpy as np

        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            for text, vector in zip(missing, self.encoder.encode(missing), strict=True):
                self._vectors[text] = np.asarray(vector, dtype=np.float32)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._vectors[text] for text in texts])


def mmr(vectors: np.ndarray, k: int, *, diversity: float = 0.3) -> list[int]:
    """Maximal marginal relevance: indexes of ``k`` rows central to the set yet unlike each other.

    Relevance is the cosine to the normalised centroid (unit rows assumed); ties go to the
    earlier row, so the choice is deterministic.
    """
    import numpy as np

    count = vectors.shape[0]
    if count == 0 or k <= 0:
        return []
    centroid = vectors.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    relevance = vectors @ centroid
    chosen: list[int] = []
    closest = np.full(count, -1.0, dtype=np.float64)  # max cosine to anything chosen so far
    available = np.ones(count, dtype=bool)
    for _ in range(min(k, count)):
        redundancy = np.where(closest < 0, 0.0, closest) if chosen else np.zeros(count)
        score = (1 - diversity) * relevance - diversity * redundancy
        score = np.where(available, score, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen


def evenly_spaced(count: int, limit: int) -> list[int]:
    """At most ``limit`` indexes spread over ``range(count)`` (first and last included)."""
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def _clean_term(term: str, text: str) -> str | None:
    """The term as it is usually written, or None when it is no good as a key term."""
    term = " ".join(term.split()).strip(" -'’\"“”()[],.;:")
    tokens = words(term)
    if not tokens or len(term) < 3 or len(tokens) != len(term.split()):
        return None  # punctuation inside (e.g. "page 3," or "e.g") is not a term
    if any(token.isdigit() for token in tokens) or all(token in STOPWORDS for token in tokens):
        return None
    if tokens[0] in STOPWORDS or tokens[-1] in STOPWORDS:
        return None
    # YAKE keeps the case of the first occurrence, often a sentence start: prefer lower case
    # when the text uses it, so "Partition" becomes "partition" but "Kafka" stays.
    lower = term.lower()
    return lower if contains_term(text, lower) and lower in text else term


def _noun_like(term: str, text: str) -> bool:
    """Whether the text uses ``term`` as a noun phrase: after an article or quantifier, or
    capitalised (a name) where it is not merely the start of a sentence."""
    for match in term_pattern(term).finditer(text):
        before = text[max(0, match.start() - 60) : match.start()].rstrip()  # a window: no O(n^2)
        surface = match.group().split()
        sentence_start = match.start() == 0 or before.endswith((".", "!", "?", ":"))
        if all(word[:1].isupper() for word in surface) and (len(surface) > 1 or not sentence_start):
            return True
        previous = words(before[-40:])
        if previous and previous[-1] in _NOUN_CUES:
            return True
    return False


def _fragment(term: str, counts: dict[str, int]) -> bool:
    """Whether ``term`` only ever occurs inside a longer candidate ("Lake" of "Delta Lake");
    ``counts`` holds each candidate's number of occurrences."""
    return any(
        other != term and count >= counts[term] and contains_term(other, term) for other, count in counts.items()
    )


class OfflineGenerator:
    """Extractive, deterministic study material from the document's own sentences."""

    name = "offline"

    def __init__(
        self,
        embedder: TextEncoder,
        *,
        sentences_per_section: int | None = None,
        overview_sentences: int = 8,
        terms_per_section: int = 6,
        max_terms: int = 40,
        candidate_limit: int = 160,
        diversity: float = 0.3,
    ) -> None:
        self.embedder = embedder
        self.sentences_per_section = sentences_per_section
        self.overview_sentences = overview_sentences
        self.terms_per_section = terms_per_section
        self.max_terms = max_terms
        self.candidate_limit = candidate_limit
        self.diversity = diversity
        params = (sentences_per_section, overview_sentences, terms_per_section, max_terms, candidate_limit, diversity)
        defaults = (None, 8, 6, 40, 160, 0.3)
        # Another configuration writes other material: it must not share ids with the default.
        suffix = "" if params == defaults else "+" + hashlib.sha256(repr(params).encode()).hexdigest()[:8]
        self.version = OFFLINE_VERSION + suffix
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "calls": 0}
        self._encoder = CachedEncoder(embedder)
        self._section_sentences: dict[str, list[CitedSentence]] = {}

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, cached: the overview reuses the section steps' vectors."""
        return self._encoder.encode(texts)

    def _statements(self, section: Section, pages: Sequence[PageText]) -> list[CitedSentence]:
        cached = self._section_sentences.get(section.section_id)
        if cached is None:
            sentences = split_sentences(pages)
            cached = [s for s in sentences if is_statement(s.text)] or [s for s in sentences if len(words(s.text)) >= 3]
            self._section_sentences[section.section_id] = cached
        return cached

    # ---- the generator steps
    def section_notes(self, section: Section, pages: Sequence[PageText]) -> list[CitedSentence]:
        """The section's most central, mutually different sentences, in reading order."""
        candidates = self._statements(section, pages)
        if not candidates:
            return []
        # A cap on sentences embedded per section keeps a dense chapter's cost bounded; the
        # sample is spread over the whole section, so no page range is ignored.
        sample = [candidates[i] for i in evenly_spaced(len(candidates), self.candidate_limit)]
        page_count = section.page_end - section.page_start + 1
        wanted = self.sentences_per_section or min(8, max(2, math.ceil(page_count / 2)))
        picked = mmr(self.vectors([s.text for s in sample]), wanted, diversity=self.diversity)
        return [sample[i] for i in sorted(picked)]

    def overview(self, section_notes: Sequence[SectionNote]) -> list[CitedSentence]:
        """A handful of the notes' sentences that together span the document, in reading order."""
        unique = {(s.text, tuple(s.pages)): s for note in section_notes for s in note.sentences}
        pool = list(unique.values())
        picked = mmr(self.vectors([s.text for s in pool]), self.overview_sentences, diversity=self.diversity)
        return [pool[i] for i in sorted(picked)]

    def key_terms(self, doc: DocumentText, sections: Sequence[SectionNote]) -> list[KeyTerm]:
        """YAKE key phrases per section (taken in turns, so every section contributes), each with
        a defining sentence of that section containing it."""
        import yake

        extractor = yake.KeywordExtractor(lan="en", n=2, top=self.terms_per_section * 3, dedup_lim=0.7)
        per_section: list[list[KeyTerm]] = []
        for note in sections:
            statements = self._statements(note.section, section_pages_of(doc, note.section))
            text = " ".join(s.text for s in statements)
            candidates = [_clean_term(raw, text) for raw, _score in extractor.extract_keywords(text)] if text else []
            counts = {c: len(term_pattern(c).findall(text)) for c in dict.fromkeys(c for c in candidates if c)}
            kept = [term for term in counts if not _fragment(term, counts)]
            # Noun phrases make questions; YAKE also proposes verbs ("stores"). Text without
            # articles (a word list, say) has no noun-like term at all: then take YAKE's order.
            kept = [t for t in kept if _noun_like(t, text)] or kept
            found: list[KeyTerm] = []
            for term in kept:
                definition = self._definition(term, note.sentences, statements)
                if definition:
                    found.append(KeyTerm(term=term, definition=definition))
                if len(found) == self.terms_per_section:
                    break
            per_section.append(found)
        terms: list[KeyTerm] = []
        seen: set[str] = set()
        for rank in range(self.terms_per_section):
            for found in per_section:
                if rank < len(found) and term_key(found[rank].term) not in seen and len(terms) < self.max_terms:
                    seen.add(term_key(found[rank].term))
                    terms.append(found[rank])
        return terms

    @staticmethod
    def _definition(
        term: str, notes: Sequence[CitedSentence], statements: Sequence[CitedSentence]
    ) -> CitedSentence | None:
        """A note sentence holding the term, else a definition-like sentence, else the shortest."""
        for sentence in notes:
            if contains_term(sentence.text, term):
                return sentence
        holding = [s for s in statements if contains_term(s.text, term) and len(words(s.text)) <= 40]
        for sentence in holding:
            if any(f"{term.lower()}{cue}" in sentence.text.lower() for cue in _DEFINITION_CUES):
                return sentence
        return min(holding, key=lambda s: len(s.text), default=None)

    def question_for(self, sentence: CitedSentence, term: str) -> str:
        """A multiple-choice stem: the statement with its key term hidden."""
        masked = blank_term(sentence.text, term, "_____")
        page = sentence.pages[0]
        return f"Which term completes this statement from page {page}? “{masked}”"
