"""Chunk vectors with their section context, for ``bench/retrieval_cv.py``'s ``context`` idea.

Each chunk of ``bench/retrieval.py``'s cached index is embedded again as
``"<document title>. <chapter> > <section> > ...\\n<chunk text>"`` (or without the title): the heading path is that of
the last PDF outline entry (bookmark, read with pypdfium2) that starts on or before the chunk's
first page, and the title is the PDF's metadata title, or the file name when it has none. The
stored chunk text is not changed (citations quote it); only what the vector sees. The vectors
are computed with the index's embedder and precision and cached in ``.lakehouse/bench/
retrieval_cv/`` beside the candidate lists (a few minutes of CPU on 13,528 chunks: run under
the heavy-run lock).
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from bench.corpus import DOCUMENTS, document_path


def outline(name: str) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
    """(title, [(1-based first page, heading path)]) of one evaluation document, by page: the
    platform's own outline reader (``processing.pdf.outline``) and title fallback
    (``processing.chunking.document_title``)."""
    from processing.chunking import document_title
    from processing.pdf import outline as read_outline

    title, entries = read_outline(document_path(name).read_bytes())
    return document_title(title, DOCUMENTS[name]), sorted(entries, key=lambda entry: entry[0])


def heading_at(entries: list[tuple[int, tuple[str, ...]]], page: int) -> tuple[str, ...]:
    """The heading path of the last outline entry starting on or before ``page`` (none before
    the first one)."""
    position = bisect.bisect_right([first for first, _ in entries], page)
    return entries[position - 1][1] if position else ()


def context_text(title: str, headings: tuple[str, ...], text: str) -> str:
    """``"<title>. <heading> > <subheading>\\n<text>"``; either part may be empty (no prefix at all
    when both are)."""
    prefix = " ".join(part for part in (f"{title}." if title else "", " > ".join(headings)) if part)
    return f"{prefix}\n{text}" if prefix else text


def context_vectors(
    table: Any, chunk_ids: list[str], settings: Any, document_names: dict[str, str], *, with_title: bool = True
) -> Any:
    """Vectors of the chunks ``chunk_ids`` (in that order) embedded with their context (the
    heading path alone when not ``with_title``)."""
    import numpy as np

    from processing.embedding import get_embedder

    rows = table.to_arrow().select(["chunk_id", "document_id", "page_start", "text"]).to_pylist()
    by_id = {row["chunk_id"]: row for row in rows}
    outlines = {name: outline(name) for name in DOCUMENTS}
    texts = []
    for chunk in chunk_ids:
        row = by_id[chunk]
        title, entries = outlines[document_names[row["document_id"]]]
        headings = heading_at(entries, int(row["page_start"]))
        texts.append(context_text(title if with_title else "", headings, row["text"]))
    embedder = get_embedder(settings.embedding)
    out = np.empty((len(texts), 384), dtype=np.float32)
    started = time.perf_counter()
    for begin in range(0, len(texts), 256):
        out[begin : begin + 256] = embedder.encode(texts[begin : begin + 256])
        done = min(begin + 256, len(texts))
        print(f"\r  context embedding: {done}/{len(texts)} ({done / (time.perf_counter() - started):.0f}/s)", end="")
    print(flush=True)
    return out
