"""Quality scores stored with the material: pure functions, thresholds passed in.

Notes: citation precision (share of the content words of each note sentence found on the pages
it cites) and section coverage. Quizzes: answerability (the key is in the source chunk, and a
full-text search from the question finds that chunk), duplicate facts, and how close the
distractors are to the key (a band: plausible, never a synonym). Below a threshold, the result
is ``flagged`` with the reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.models import CitedSentence, DocumentText, KeyTerm, NotesQuality, QuizItem, QuizQuality, SectionNote
from study.text import contains_term, content_words, normalise, page_vocabulary, squash

if TYPE_CHECKING:
    import numpy as np

    from study.offline import TextEncoder

Search = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class QualityThresholds:
    """Where material gets flagged (the lead maps the study settings onto this)."""

    min_citation_precision: float = 0.8
    min_section_coverage: float = 0.9
    min_answerability: float = 0.8
    max_duplicate_rate: float = 0.0
    distractor_min_similarity: float = 0.25
    distractor_max_similarity: float = 0.85
    # Two facts this close (cosine) are the same fact said twice.
    duplicate_similarity: float = 0.92
    search_top_k: int = 5


DEFAULT_THRESHOLDS = QualityThresholds()


# ---- notes
def citation_precision(sentence: CitedSentence, page_texts: Mapping[int, str]) -> float:
    """Share of the sentence's content words that occur on the pages it cites (1.0 for no words)."""
    found, total = _citation_counts(sentence, {n: page_vocabulary(t) for n, t in page_texts.items()})
    return found / total if total else 1.0


def _citation_counts(sentence: CitedSentence, vocabularies: Mapping[int, set[str]]) -> tuple[int, int]:
    cited: set[str] = set().union(*(vocabularies.get(page, set()) for page in sentence.pages))
    needed = content_words(sentence.text)
    return sum(1 for word in needed if word in cited), len(needed)


def notes_citation_precision(doc: DocumentText, sentences: Sequence[CitedSentence]) -> float:
    """Citation precision over all ``sentences``, weighted by their words (1.0 when there are none)."""
    vocabularies = {page.number: page_vocabulary(page.text) for page in doc.pages}
    found = total = 0
    for sentence in sentences:
        hits, words = _citation_counts(sentence, vocabularies)
        found += hits
        total += words
    return found / total if total else 1.0


def section_coverage(section_notes: Sequence[SectionNote]) -> tuple[int, int]:
    """(sections with at least one note sentence, sections)."""
    return sum(1 for note in section_notes if note.sentences), len(section_notes)


def notes_quality(
    doc: DocumentText,
    section_notes: Sequence[SectionNote],
    *,
    overview: Sequence[CitedSentence] = (),
    key_terms: Sequence[KeyTerm] = (),
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> NotesQuality:
    """Scores of a set of notes: every sentence written (sections, overview, definitions) counts."""
    sentences = [s for note in section_notes for s in note.sentences]
    sentences += [*overview, *(term.definition for term in key_terms)]
    precision = notes_citation_precision(doc, sentences)
    covered, total = section_coverage(section_notes)
    coverage = covered / total if total else 0.0
    reasons = []
    if precision < thresholds.min_citation_precision:
        reasons.append(f"citation precision {precision:.2f} < {thresholds.min_citation_precision:.2f}")
    if coverage < thresholds.min_section_coverage:
        reasons.append(f"section coverage {coverage:.2f} < {thresholds.min_section_coverage:.2f}")
    return NotesQuality(
        citation_precision=round(precision, 4),
        section_coverage=round(coverage, 4),
        sections=total,
        sections_covered=covered,
        flagged=bool(reasons),
        reasons=reasons,
    )


# ---- quizzes
def correct_text(item: QuizItem) -> str:
    """The text of the item's correct option."""
    return next(option.text for option in item.options if option.option_id == item.correct_option_id)


def key_in_chunk(item: QuizItem, chunk_texts: Mapping[str, str]) -> bool:
    """Whether the item's key occurs (whole words, any case) in its source chunk."""
    text = chunk_texts.get(item.source_chunk_id)
    return text is not None and contains_term(squash(text), correct_text(item))


def answerable(item: QuizItem, chunk_texts: Mapping[str, str], *, search: Search | None = None, top_k: int = 5) -> bool:
    """The key is in the source chunk and, given ``search``, the question finds that chunk in its top k."""
    if not key_in_chunk(item, chunk_texts):
        return False
    return search is None or item.source_chunk_id in list(search(item.question))[:top_k]


def duplicate_flags(facts: Sequence[str], vectors: np.ndarray | None = None, *, similarity: float = 0.92) -> list[bool]:
    """For each fact, whether it repeats an earlier one (same normalised text, or cosine >= similarity)."""
    seen: set[str] = set()
    flags = []
    for index, fact in enumerate(facts):
        key = normalise(fact)
        repeated = key in seen
        if not repeated and vectors is not None and index > 0:
            repeated = float((vectors[:index] @ vectors[index]).max()) >= similarity
        seen.add(key)
        flags.append(repeated)
    return flags


def distractor_similarities(items: Sequence[QuizItem], encoder: TextEncoder) -> list[float]:
    """Cosine of every distractor to its item's key."""
    pairs = [
        (correct_text(item), o.text) for item in items for o in item.options if o.option_id != item.correct_option_id
    ]
    if not pairs:
        return []
    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    vectors = dict(zip(texts, encoder.encode(texts), strict=True))
    return [float(vectors[key] @ vectors[other]) for key, other in pairs]


def quiz_quality(
    doc: DocumentText,
    items: Sequence[QuizItem],
    *,
    encoder: TextEncoder,
    search: Search | None = None,
    requested: int | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> QuizQuality:
    """Scores of a quiz against its document (and, given ``search``, against the search index)."""
    chunk_texts = {chunk.chunk_id: chunk.text for chunk in doc.chunks}
    count = len(items)
    answered = sum(answerable(item, chunk_texts, search=search, top_k=thresholds.search_top_k) for item in items)
    facts = [item.fact for item in items]
    duplicates = sum(duplicate_flags(facts, encoder.encode(facts), similarity=thresholds.duplicate_similarity))
    similarities = distractor_similarities(items, encoder)
    answerability = answered / count if count else 0.0
    duplicate_rate = duplicates / count if count else 0.0
    low, high = (min(similarities), max(similarities)) if similarities else (0.0, 0.0)
    reasons = []
    if requested is not None and count < requested:
        reasons.append(f"only {count} of {requested} items")
    if answerability < thresholds.min_answerability:
        reasons.append(f"answerability {answerability:.2f} < {thresholds.min_answerability:.2f}")
    if duplicate_rate > thresholds.max_duplicate_rate:
        reasons.append(f"duplicate rate {duplicate_rate:.2f} > {thresholds.max_duplicate_rate:.2f}")
    if similarities and high > thresholds.distractor_max_similarity:
        reasons.append(f"a distractor is too close to its key (cosine {high:.2f})")
    if similarities and low < thresholds.distractor_min_similarity:
        reasons.append(f"a distractor is implausibly far from its key (cosine {low:.2f})")
    return QuizQuality(
        answerability=round(answerability, 4),
        duplicate_rate=round(duplicate_rate, 4),
        distractor_similarity_min=round(low, 4),
        distractor_similarity_max=round(high, 4),
        items=count,
        flagged=bool(reasons),
        reasons=reasons,
    )


def summary(notes: NotesQuality | None = None, quiz: QuizQuality | None = None) -> dict[str, Any]:
    """A flat dict of the scores, for one log line or a job's progress event."""
    out: dict[str, Any] = {}
    if notes is not None:
        out.update(
            notes_citation_precision=notes.citation_precision,
            notes_section_coverage=notes.section_coverage,
            notes_sections=notes.sections,
            notes_flagged=notes.flagged,
        )
    if quiz is not None:
        out.update(
            quiz_items=quiz.items,
            quiz_answerability=quiz.answerability,
            quiz_duplicate_rate=quiz.duplicate_rate,
            quiz_distractor_similarity=[quiz.distractor_similarity_min, quiz.distractor_similarity_max],
            quiz_flagged=quiz.flagged,
        )
    reasons = [*(notes.reasons if notes else []), *(quiz.reasons if quiz else [])]
    if reasons:
        out["reasons"] = reasons
    return out
