"""Quizzes from notes: multiple-choice and cloze items on key terms, each tied to the chunk and
page that answer it.

Facts are (key term, sentence) pairs: first the key terms' definitions, then note sentences that
mention a key term. Distractors are other key terms of the same document whose embedding cosine
to the key lies in a band: close enough to be plausible, far enough never to be a synonym.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.generators import StudyGenerator, TextEncoder
from study.models import ChunkText, CitedSentence, DocumentText, Notes, Quiz, QuizItem, QuizOption, stable_id
from study.offline import CachedEncoder
from study.quality import DEFAULT_THRESHOLDS, QualityThresholds, Search, quiz_quality
from study.sections import section_of_page
from study.text import blank_term, contains_term, content_words, normalise, squash, term_key

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[int, int], None]
OPTIONS = 4
BLANK = "_____"


@dataclass(frozen=True)
class _Fact:
    term: int  # index into the notes' key terms
    sentence: CitedSentence


def _facts(notes: Notes) -> list[_Fact]:
    """Definitions first (the best sentences for their terms), then note sentences with a key term."""
    terms = [key.term for key in notes.key_terms]
    facts = [_Fact(index, key.definition) for index, key in enumerate(notes.key_terms)]
    for sentence in [s for note in notes.sections for s in note.sentences]:
        facts.extend(_Fact(index, sentence) for index, term in enumerate(terms) if contains_term(sentence.text, term))
    return facts


def source_chunk(chunks: Sequence[ChunkText], sentence: CitedSentence, term: str) -> ChunkText | None:
    """The chunk on the sentence's pages that holds the term and most of the sentence's words."""
    first, last = min(sentence.pages), max(sentence.pages)
    wanted = set(content_words(sentence.text))
    best: tuple[float, ChunkText] | None = None
    for chunk in chunks:
        if chunk.page_end < first or chunk.page_start > last:
            continue
        text = squash(chunk.text)
        if not contains_term(text, term):
            continue
        whole = 1.0 if squash(sentence.text).lower() in text.lower() else 0.0
        share = len(wanted & set(content_words(text))) / len(wanted) if wanted else 0.0
        if best is None or whole + share > best[0]:
            best = (whole + share, chunk)
    return best[1] if best else None


def _unlike(a: str, b: str) -> bool:
    """Neither text equals or contains the other, ignoring case, punctuation and plurals."""
    x, y = f" {term_key(a)} ", f" {term_key(b)} "
    return x.strip() != y.strip() and x not in y and y not in x


def pick_distractors(
    key: int, terms: Sequence[str], similarity: np.ndarray, sentence: str, *, low: float, high: float
) -> list[int] | None:
    """Three other terms in the cosine band [low, high] to the key, the most plausible (closest) first;
    never the key itself (ignoring case/punctuation), never in the sentence, never near-copies of each other."""
    order = sorted((j for j in range(len(terms)) if j != key), key=lambda j: (-float(similarity[key, j]), terms[j]))
    chosen: list[int] = []
    for j in order:
        cosine = float(similarity[key, j])
        if not low <= cosine <= high or not _unlike(terms[j], terms[key]) or contains_term(sentence, terms[j]):
            continue
        if all(_unlike(terms[j], terms[c]) and float(similarity[j, c]) <= high for c in chosen):
            chosen.append(j)
        if len(chosen) == OPTIONS - 1:
            return chosen
    return None


def _rarity_ranks(terms: Sequence[str], page_texts: Sequence[str]) -> list[float]:
    """Per term, 0..1: how rare it is among this document's key terms (by pages holding it).

    Relative, not absolute: a course's own vocabulary is on most of its pages.
    """
    counts = [sum(contains_term(text, term) for text in page_texts) for term in terms]
    order = sorted(range(len(terms)), key=lambda i: (-counts[i], terms[i]))
    ranks = [0.0] * len(terms)
    for position, index in enumerate(order):
        ranks[index] = position / max(len(terms) - 1, 1)
    return ranks


def _difficulty(rarity: float, closeness: float) -> str:
    """Rare terms and close distractors make harder items."""
    score = 0.5 * rarity + 0.5 * closeness
    return "easy" if score < 0.4 else "medium" if score < 0.65 else "hard"


def generate_quiz(
    doc: DocumentText,
    notes: Notes,
    *,
    generator: StudyGenerator,
    embedder: TextEncoder,
    items: int = 10,
    progress: Progress | None = None,
    search: Search | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> Quiz:
    """Up to ``items`` MCQ and cloze items (alternating), no two on the same fact, scored.

    ``search(question) -> chunk ids`` (full-text search over the document's chunks), when given,
    must find an item's source chunk in its top ``thresholds.search_top_k``, or the fact is skipped.
    """
    import numpy as np

    embedder = CachedEncoder(embedder)  # generation and scoring must see the same cosines
    terms = [key.term for key in notes.key_terms]
    facts = _facts(notes)
    low, high = thresholds.distractor_min_similarity, thresholds.distractor_max_similarity
    chosen: list[QuizItem] = []
    if len(terms) >= OPTIONS and items > 0:
        term_vectors = embedder.encode(terms)
        similarity = term_vectors @ term_vectors.T
        fact_texts = list(dict.fromkeys(fact.sentence.text for fact in facts))
        fact_vectors = dict(zip(fact_texts, embedder.encode(fact_texts), strict=True))
        sections = [note.section for note in notes.sections]
        rarities = _rarity_ranks(terms, [page.text for page in doc.pages])
        taken_facts: set[str] = set()
        taken_vectors: list[np.ndarray] = []
        used_terms: set[int] = set()
        # Passes: one item per term first; then terms may repeat (on other facts); last, distractors
        # below the band's floor are allowed rather than a quiz too short (quality then flags it).
        for repeat_terms, floor in ((False, low), (True, low), (True, -1.0)):
            for fact in facts:
                if len(chosen) == items:
                    break
                term, sentence = terms[fact.term], fact.sentence
                key = normalise(sentence.text)
                if key in taken_facts or (fact.term in used_terms and not repeat_terms):
                    continue
                vector = fact_vectors[sentence.text]
                if taken_vectors and float(np.max(np.stack(taken_vectors) @ vector)) >= thresholds.duplicate_similarity:
                    continue
                chunk = source_chunk(doc.chunks, sentence, term)
                distractors = pick_distractors(fact.term, terms, similarity, sentence.text, low=floor, high=high)
                if chunk is None or distractors is None:
                    continue
                kind = "mcq" if len(chosen) % 2 == 0 else "cloze"
                if kind == "mcq":
                    question = generator.question_for(sentence, term)
                else:
                    question = f"Fill in the blank (page {sentence.pages[0]}): {blank_term(sentence.text, term, BLANK)}"
                if search is not None and chunk.chunk_id not in list(search(question))[: thresholds.search_top_k]:
                    continue
                rarity = rarities[fact.term]
                mean = float(np.mean([similarity[fact.term, j] for j in distractors]))
                closeness = min(max((mean - low) / max(high - low, 1e-6), 0.0), 1.0)
                chosen.append(
                    _item(
                        doc,
                        generator.version,
                        kind=kind,
                        term=term,
                        sentence=sentence,
                        question=question,
                        distractors=[terms[j] for j in distractors],
                        chunk=chunk,
                        section_id=(section_of_page(sections, sentence.pages[0]) or sections[0]).section_id,
                        difficulty=_difficulty(rarity, closeness),
                    )
                )
                taken_facts.add(key)
                taken_vectors.append(vector)
                used_terms.add(fact.term)
                if progress is not None:
                    progress(len(chosen), items)
    quality = quiz_quality(doc, chosen, encoder=embedder, search=search, requested=items, thresholds=thresholds)
    return Quiz(
        quiz_id=stable_id(doc.document_id, doc.version, generator.version, "quiz", notes.notes_id, items),
        document_id=doc.document_id,
        version=doc.version,
        course_id=doc.course_id,
        generator=generator.name,
        generator_version=generator.version,
        items=chosen,
        quality=quality,
    )


def _item(
    doc: DocumentText,
    generator_version: str,
    *,
    kind: str,
    term: str,
    sentence: CitedSentence,
    question: str,
    distractors: list[str],
    chunk: ChunkText,
    section_id: str,
    difficulty: str,
) -> QuizItem:
    fact = normalise(sentence.text)
    item_id = stable_id(doc.document_id, doc.version, generator_version, "quiz-item", kind, normalise(term), fact)
    # The correct option's position comes from the item id: spread over A-D, and the same on every run.
    position = int(item_id.replace("-", "")[:8], 16) % OPTIONS
    texts = list(distractors)
    texts.insert(position, term)
    options = [QuizOption(option_id=stable_id(item_id, "option", normalise(text)), text=text) for text in texts]
    in_chunk = [p for p in sentence.pages if chunk.page_start <= p <= chunk.page_end]
    return QuizItem(
        item_id=item_id,
        kind=kind,  # type: ignore[arg-type]  # "mcq" | "cloze", chosen above
        question=question,
        options=options,
        correct_option_id=options[position].option_id,
        explanation=f"“{sentence.text}” (page {', '.join(map(str, sentence.pages))})",
        source_chunk_id=chunk.chunk_id,
        page=(in_chunk or sentence.pages)[0],
        section_id=section_id,
        difficulty=difficulty,  # type: ignore[arg-type]  # from _difficulty
        fact=fact,
    )
