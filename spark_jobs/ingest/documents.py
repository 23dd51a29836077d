"""The immutable values the ingestion steps pass along, one per stage a document reaches.

Each step takes values of one stage and returns new ones of the next stage, or a
``FailedDocument`` with the reason the student sees; nothing is mutated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spark_jobs.ingest.events import Upload

if TYPE_CHECKING:
    import numpy as np

    from processing.chunking import Chunk, OutlineEntry
    from processing.pdf import Page


@dataclass(frozen=True)
class FailedDocument:
    upload: Upload
    reason: str
    pages_total: int = 0


@dataclass(frozen=True)
class OpenedDocument:
    """Raw bytes read and checked (hash, PDF structure): ready for extraction. ``title`` and
    ``outline`` give the chunks their section context (``processing.chunking``); both may be empty."""

    upload: Upload
    data: bytes
    pages_total: int
    title: str = ""
    outline: tuple[OutlineEntry, ...] = ()


@dataclass(frozen=True)
class ParsedDocument:
    """Text extracted page by page and split into chunks."""

    upload: Upload
    pages_total: int
    pages: tuple[Page, ...]
    chunks: tuple[Chunk, ...] = ()
    title: str = ""
    outline: tuple[OutlineEntry, ...] = ()


@dataclass(frozen=True)
class EmbeddedDocument:
    """A parsed document with one vector per chunk (row ``i`` is chunk ``i``): ready to write."""

    parsed: ParsedDocument
    vectors: np.ndarray

    @property
    def upload(self) -> Upload:
        return self.parsed.upload


DocumentOutcome = EmbeddedDocument | FailedDocument
