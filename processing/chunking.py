"""Chunking with LangChain's RecursiveCharacterTextSplitter, keeping page provenance.

Pages are joined into one text (so a chunk may run across a page break, as sentences do) and
each chunk's character span is mapped back to the pages it covers. Chunk indexes follow the
text order, so the same document and settings always give the same chunks and chunk ids.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from core.ids import chunk_id
from processing.pdf import Page

PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    chunk_index: int
    page_start: int
    page_end: int
    char_start: int  # offset in the joined document text
    text: str


def chunk_pages(
    pages: Sequence[Page],
    *,
    document_id: str,
    version: int,
    chunk_size: int = 1000,
    chunk_overlap: int = 150,
) -> list[Chunk]:
    """Splits the document's pages into chunks with page spans and stable ids."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    ordered = sorted((page for page in pages if page.text.strip()), key=lambda page: page.number)
    if not ordered:
        return []
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in ordered:
        starts.append(offset)
        parts.append(page.text)
        offset += len(page.text) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(parts)
    numbers = [page.number for page in ordered]

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True, strip_whitespace=True
    )
    chunks = []
    for index, doc in enumerate(splitter.create_documents([text])):
        start = int(doc.metadata["start_index"])
        if start < 0:  # the splitter could not locate the chunk (never for unmodified text)
            start = text.find(doc.page_content)
        end = start + max(len(doc.page_content) - 1, 0)
        first = numbers[bisect.bisect_right(starts, start) - 1]
        last = numbers[bisect.bisect_right(starts, end) - 1]
        chunks.append(
            Chunk(
                chunk_id=chunk_id(document_id, version, index),
                chunk_index=index,
                page_start=first,
                page_end=last,
                char_start=start,
                text=doc.page_content,
            )
        )
    return chunks
