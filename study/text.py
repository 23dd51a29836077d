"""Text helpers shared by generation and scoring: sentences that remember their pages, words,
normalised facts and term matching. Pure functions, no model."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from study.models import CitedSentence, PageText

# A boundary inserted where a line is a heading (no end punctuation, next line starts a sentence):
# without it a page's running header would be glued to its first sentence.
_BREAK = "\u2029"
_SENTENCE_END = re.compile(r"[.!?][\"”’)\]]*\s+(?=[\"“(\[]?[A-Z0-9])|" + _BREAK)
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_END_PUNCTUATION = tuple('.!?:;"”’)')
# Short enough to be a heading rather than the last, full line of a wrapped paragraph.
_HEADING_MAX_CHARS = 70

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just may me might more most
    must my no nor not now of off on once only or other our ours out over own same shall she should so
    some such than that the their theirs them then there these they this those through to too under
    until up upon very was we were what when where which while who whom why will with within without
    would you your yours one two via per thus hence therefore however""".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, inner apostrophes and hyphens kept)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Words that carry meaning: no stopwords, no one-letter tokens."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


def page_vocabulary(text: str) -> set[str]:
    """Every word of a page, and the parts of its hyphenated words (a line break may split them)."""
    vocabulary = set(words(text))
    for word in list(vocabulary):
        if "-" in word:
            vocabulary.update(part for part in word.split("-") if part)
    return vocabulary


def normalise(text: str) -> str:
    """Lower case, words only, single spaces: equality ignoring case and punctuation."""
    return " ".join(words(text))


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def term_key(text: str) -> str:
    """``normalise`` with crude plural folding: "Partitions" and "partition" are one term."""
    return " ".join(_stem(word) for word in words(text))


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces (PDF text wraps lines anywhere)."""
    return " ".join(text.split())


def term_pattern(term: str) -> re.Pattern[str]:
    """Matches ``term`` as whole words, any case, any whitespace between its words."""
    parts = [re.escape(part) for part in term.split()]
    return re.compile(r"(?<![\w-])" + r"\s+".join(parts) + r"(?![\w-])", re.IGNORECASE)


def contains_term(text: str, term: str) -> bool:
    """Whether ``text`` holds ``term`` as whole words (case-insensitive)."""
    return bool(term.strip()) and term_pattern(term).search(text) is not None


def blank_term(text: str, term: str, blank: str = "_____") -> str:
    """``text`` with every occurrence of ``term`` replaced by ``blank``."""
    return term_pattern(term).sub(blank, text)


def _line_key(line: str) -> str:
    return re.sub(r"\d+", "#", squash(line).lower())


def running_lines(pages: Sequence[PageText]) -> set[str]:
    """Normalised header/footer lines repeated on many pages (digits ignored: page numbers vary)."""
    counts: Counter[str] = Counter()
    for page in pages:
        lines = [line for line in page.text.splitlines() if line.strip()]
        if lines:
            counts.update({_line_key(lines[0]), _line_key(lines[-1])})
    needed = max(3, int(0.3 * len(pages)))
    return {key for key, count in counts.items() if count >= needed}


def _page_body(text: str, running: set[str]) -> str:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and _line_key(line) not in running]
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        following = lines[index + 1] if index + 1 < len(lines) else ""
        is_heading = not line.endswith(_END_PUNCTUATION) and len(line) <= _HEADING_MAX_CHARS and following[:1].isupper()
        out.append(_BREAK if is_heading else " ")
    return "".join(out)


def split_sentences(pages: Sequence[PageText], *, running: set[str] | None = None) -> list[CitedSentence]:
    """Sentences of ``pages`` in reading order, each with the page(s) it spans.

    Pages are joined so a sentence that runs over a page break stays whole and cites both pages.
    Lines in ``running`` (see ``running_lines``) are dropped as page furniture.
    """
    ordered = sorted(pages, key=lambda page: page.number)
    skip = running_lines(ordered) if running is None else running
    starts: list[int] = []
    numbers: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in ordered:
        body = _page_body(page.text, skip)
        if not body.strip():
            continue
        starts.append(offset)
        numbers.append(page.number)
        parts.append(body)
        offset += len(body) + 1
    text = " ".join(parts)
    sentences: list[CitedSentence] = []
    begin = 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.end() if match else len(text)
        raw = text[begin:end].replace(_BREAK, " ")
        stripped = squash(raw)
        if stripped:
            first = begin + (len(raw) - len(raw.lstrip()))
            last = begin + len(raw.rstrip()) - 1
            page_from = bisect.bisect_right(starts, first) - 1
            page_to = bisect.bisect_right(starts, last) - 1
            sentences.append(CitedSentence(text=stripped, pages=numbers[page_from : page_to + 1]))
        begin = end
    return sentences


def is_statement(sentence: str, *, min_words: int = 6, max_words: int = 60) -> bool:
    """A full sentence worth quoting: starts with a capital or digit, ends with punctuation, sane length."""
    count = len(words(sentence))
    return (
        min_words <= count <= max_words
        and sentence[:1].isalnum()
        and (sentence[:1].isupper() or sentence[:1].isdigit())
        and sentence.rstrip('"”’)]').endswith((".", "!", "?"))
    )


def pages_text(pages: Iterable[PageText]) -> dict[int, str]:
    """Page number -> text."""
    return {page.number: page.text for page in pages}
