"""A document split into sections: its PDF outline when it has one, else windows of pages.

Sections cover every page from the first to the last (a long book is never truncated), and a
section's id depends only on the document version and its index, so reruns agree.
"""

from __future__ import annotations

from study.models import DocumentText, PageText, Section, stable_id


def _page_range(doc: DocumentText) -> tuple[int, int] | None:
    numbers = [page.number for page in doc.pages]
    return (min(numbers), max(numbers)) if numbers else None


def _windows(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


def _outline_spans(doc: DocumentText, first: int, last: int) -> list[tuple[str, int, int]]:
    """(title, start, end) per outline entry, in page order; pages before the first entry become
    a front-matter section so nothing is left out."""
    entries: list[tuple[str, int]] = []
    for title, page in sorted(doc.outline, key=lambda entry: entry[1]):
        if not first <= page <= last:
            continue  # a broken outline may point outside the document
        if entries and entries[-1][1] == page:
            continue  # nested entries on one page: the outer (first) title names the section
        entries.append((title.strip() or f"Page {page}", page))
    if not entries:
        return []
    spans: list[tuple[str, int, int]] = []
    if entries[0][1] > first:
        spans.append(("Front matter", first, entries[0][1] - 1))
    for index, (title, page) in enumerate(entries):
        end = entries[index + 1][1] - 1 if index + 1 < len(entries) else last
        spans.append((title, page, end))
    return spans


def split_sections(
    doc: DocumentText, *, section_pages: int = 10, max_section_pages: int | None = None
) -> list[Section]:
    """The document's sections: outline entries when present, else ``section_pages``-page windows.

    An outline section longer than ``max_section_pages`` (default ``3 * section_pages``) is cut into
    parts, so one chapter never becomes one oversized generation step.
    """
    if section_pages < 1:
        raise ValueError("section_pages must be at least 1")
    bounds = _page_range(doc)
    if bounds is None:
        return []
    first, last = bounds
    longest = max_section_pages or 3 * section_pages
    spans: list[tuple[str, int, int]] = []
    for title, start, end in _outline_spans(doc, first, last):
        parts = _windows(start, end, longest) if end - start + 1 > longest else [(start, end)]
        for number, (part_start, part_end) in enumerate(parts, start=1):
            spans.append((title if len(parts) == 1 else f"{title} (part {number})", part_start, part_end))
    if not spans:
        spans = [(f"Pages {start}-{end}", start, end) for start, end in _windows(first, last, section_pages)]
    return [
        Section(
            section_id=stable_id(doc.document_id, doc.version, "section", index),
            title=title,
            page_start=start,
            page_end=end,
        )
        for index, (title, start, end) in enumerate(spans)
    ]


def section_pages_of(doc: DocumentText, section: Section) -> list[PageText]:
    """The document's pages that fall in ``section``, in order."""
    return sorted(
        (page for page in doc.pages if section.page_start <= page.number <= section.page_end),
        key=lambda page: page.number,
    )


def section_of_page(sections: list[Section], page: int) -> Section | None:
    """The section holding ``page``."""
    for section in sections:
        if section.page_start <= page <= section.page_end:
            return section
    return None
