"""Text extraction: one Spark job over (document, page range) rows, PDFium (or pypdf) in parallel tasks,
then chunking on the driver."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from core.documents import REASON_NO_TEXT
from processing.chunking import chunk_pages
from processing.pdf import (
    DEFAULT_EXTRACTOR,
    Extractor,
    Limits,
    Page,
    PdfRejected,
    bounded_extract_pages,
    check_text,
    require_text,
)
from spark_jobs.ingest.documents import FailedDocument, OpenedDocument, ParsedDocument
from spark_jobs.ingest.pages import extraction_ranges

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from core.settings import IngestSettings

ExtractedRange = tuple[int, list[tuple[int, str]], str | None]
# Fewest seconds one page range may parse, whatever its share of its document's budget.
MIN_RANGE_SECONDS = 5.0


def extraction_limits(settings: IngestSettings) -> Limits:
    """The per-document bounds of ``settings`` (page and character caps, time, memory)."""
    return Limits(
        max_pages=settings.max_pages,
        max_chars=settings.max_chars,
        max_page_chars=settings.max_page_chars,
        timeout_s=settings.extract_timeout_s,
        memory_mb=settings.extract_memory_mb,
    )


def range_budget(start: int, stop: int, pages_total: int, limits: Limits) -> float:
    """Seconds one page range may parse: its pages' share of the document's budget, at least
    ``MIN_RANGE_SECONDS`` (and never more than the whole budget)."""
    share = limits.timeout_s * (stop - start) / max(1, pages_total)
    return min(limits.timeout_s, max(MIN_RANGE_SECONDS, share))


def extract_partition(
    blobs: Any, extractor: Extractor = DEFAULT_EXTRACTOR, limits: Limits | None = None
) -> Callable[[Iterable[tuple[int, int, int, float]]], Iterator[ExtractedRange]]:
    """The task closure: (document index, start, stop, seconds) rows -> (index, [(page number, text)], error).

    Each range is parsed in a child process killed after its seconds (``processing.pdf.run_bounded``)."""
    limits = limits or Limits()

    def run(rows: Iterable[tuple[int, int, int, float]]) -> Iterator[ExtractedRange]:
        for index, start, stop, seconds in rows:
            try:
                deadline = time.time() + seconds
                data = blobs.value[index]
                pages = bounded_extract_pages(data, start, stop, limits, deadline=deadline, extractor=extractor)
                yield index, [(p.number, p.text) for p in pages], None
            except PdfRejected as exc:
                yield index, [], exc.reason
            except Exception as exc:  # noqa: BLE001 - a damaged page range fails its document only
                yield index, [], f"corrupt PDF: pages {start + 1}-{stop} unreadable: {type(exc).__name__}: {exc}"[:300]

    return run


def gather_pages(
    documents: Sequence[OpenedDocument], results: Sequence[ExtractedRange], limits: Limits | None = None
) -> list[ParsedDocument | FailedDocument]:
    """Each document's pages in order, or its first extraction error, or the no-text rejection,
    or the document's character cap."""
    limits = limits or Limits()
    pages: dict[int, list[Page]] = {i: [] for i in range(len(documents))}
    errors: dict[int, str] = {}
    for index, numbered_texts, error in results:
        if error:
            errors.setdefault(index, error)
        pages[index].extend(Page(number, text) for number, text in numbered_texts)
    out: list[ParsedDocument | FailedDocument] = []
    for index, document in enumerate(documents):
        if index in errors:
            out.append(FailedDocument(document.upload, errors[index], document.pages_total))
            continue
        ordered = tuple(sorted(pages[index], key=lambda p: p.number))
        try:
            check_text(list(ordered), limits)
            require_text(list(ordered))
        except PdfRejected as exc:
            out.append(FailedDocument(document.upload, exc.reason, document.pages_total))
            continue
        out.append(
            ParsedDocument(
                document.upload, document.pages_total, ordered, title=document.title, outline=document.outline
            )
        )
    return out


def extract(
    spark: SparkSession,
    documents: Sequence[OpenedDocument],
    *,
    pages_per_task: int,
    extractor: Extractor = DEFAULT_EXTRACTOR,
    limits: Limits | None = None,
) -> list[ParsedDocument | FailedDocument]:
    """One Spark job over (document, page range) rows: the extractor runs in parallel tasks, each
    range within its share of the document's time budget."""
    if not documents:
        return []
    limits = limits or Limits()
    sc = spark.sparkContext
    totals = [d.pages_total for d in documents]
    ranges = [
        (index, start, stop, range_budget(start, stop, totals[index], limits))
        for index, start, stop in extraction_ranges(totals, pages_per_task=pages_per_task, slots=sc.defaultParallelism)
    ]
    blobs = sc.broadcast({i: d.data for i, d in enumerate(documents)})
    try:
        sc.setJobDescription(f"extract {len(documents)} document(s), {len(ranges)} page ranges")
        results = (
            sc.parallelize(ranges, len(ranges)).mapPartitions(extract_partition(blobs, extractor, limits)).collect()
        )
    finally:
        blobs.unpersist()
    return gather_pages(documents, results, limits)


def chunk(document: ParsedDocument, settings: IngestSettings) -> ParsedDocument | FailedDocument:
    """The document's chunks with page spans, stable ids and section context (on the driver)."""
    event = document.upload.event
    chunks = chunk_pages(
        document.pages,
        document_id=event.document_id,
        version=event.version,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        title=document.title,
        outline=document.outline,
    )
    if not chunks:
        return FailedDocument(document.upload, REASON_NO_TEXT, document.pages_total)
    return dataclasses.replace(document, chunks=tuple(chunks))
