"""Study fixtures: the generated demo book as a DocumentText, and the bundled embedder (int8:
the fastest precision on CPUs without bf16 units, and what the workers use)."""

from __future__ import annotations

import pytest

from core.settings import EmbeddingSettings
from processing.chunking import chunk_pages
from processing.embedding import get_embedder
from processing.pdf import extract_pages
from processing.samples import course_book
from study.models import ChunkText, DocumentText, PageText


def book_document(pages: int, *, document_id: str = "doc-book", version: int = 1) -> DocumentText:
    """The demo course book, extracted and chunked as the ingestion pipeline does."""
    book = course_book(pages)
    extracted = extract_pages(book.pdf, 0, pages)
    chunks = chunk_pages(extracted, document_id=document_id, version=version)
    return DocumentText(
        document_id=document_id,
        version=version,
        course_id="course-1",
        title="Streaming Lakehouses",
        pages=[PageText(number=p.number, text=p.text) for p in extracted],
        chunks=[
            ChunkText(chunk_id=c.chunk_id, page_start=c.page_start, page_end=c.page_end, text=c.text) for c in chunks
        ],
    )


@pytest.fixture(scope="session")
def embedder():
    return get_embedder(EmbeddingSettings(precision="int8"))


@pytest.fixture(scope="session")
def book() -> DocumentText:
    return book_document(24)
