"""PDF text extraction with pypdf: pure functions over the raw bytes, with precise rejections.

``page_count`` runs once per document on the Spark driver (cheap: pypdf parses pages lazily);
``extract_pages`` runs in Spark tasks over page ranges. Every way a PDF can be unusable maps to
one ``PdfRejected`` reason a student can act on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.documents import PDF_MAGIC, REASON_NO_TEXT

if TYPE_CHECKING:
    from pypdf import PdfReader

# pypdf looks for the header in the first KiB too (some producers put junk before it).
MAGIC_WINDOW = 1024

REASON_NOT_PDF = "not a PDF: the file does not start with the %PDF- header"
REASON_ENCRYPTED = "encrypted PDF: it is password protected; upload it without a password"
REASON_EMPTY = "empty PDF: the document has no pages"


class PdfRejected(Exception):
    """The PDF cannot be indexed; ``reason`` is human readable and specific."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, as people cite pages
    text: str


def _open(data: bytes) -> PdfReader:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

    if PDF_MAGIC not in data[:MAGIC_WINDOW]:
        raise PdfRejected(REASON_NOT_PDF)
    tail = data[-2048:]
    if b"%%EOF" not in tail:
        # pypdf can often rebuild a cut-off file's xref and read the first pages, which would
        # silently index half a book; a missing end-of-file marker is the sign of truncation.
        raise PdfRejected(f"truncated PDF: no %%EOF marker at the end of its {len(data)} bytes (upload interrupted?)")
    # pypdf logs every recoverable oddity at WARNING; the rejection reason says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # An owner-password-only PDF opens with the empty user password: that one is fine.
            try:
                if not reader.decrypt(""):
                    raise PdfRejected(REASON_ENCRYPTED)
            except (FileNotDecryptedError, NotImplementedError) as exc:
                raise PdfRejected(REASON_ENCRYPTED) from exc
        _ = len(reader.pages)
    except PdfRejected:
        raise
    except FileNotDecryptedError as exc:
        raise PdfRejected(REASON_ENCRYPTED) from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise PdfRejected(f"corrupt PDF: {type(exc).__name__}: {exc}"[:300]) from exc
    return reader


def page_count(data: bytes) -> int:
    """Number of pages, or ``PdfRejected`` for a non-PDF, corrupt, truncated, encrypted or empty file."""
    count = len(_open(data).pages)
    if count == 0:
        raise PdfRejected(REASON_EMPTY)
    return count


def extract_pages(data: bytes, start: int, stop: int) -> list[Page]:
    """Text of pages ``start`` .. ``stop - 1`` (0-based, half open), numbered from 1.

    A page whose content stream is damaged yields empty text rather than failing the whole
    document; ``require_text`` decides afterwards whether enough text came out.
    """
    reader = _open(data)
    pages = []
    for index in range(start, min(stop, len(reader.pages))):
        try:
            text = reader.pages[index].extract_text() or ""
        except Exception:  # noqa: BLE001 - one bad page must not lose the other 499
            text = ""
        pages.append(Page(index + 1, _clean(text)))
    return pages


def require_text(pages: list[Page]) -> None:
    """Rejects a document none of whose pages has extractable text (scanned or image-only)."""
    if not any(page.text.strip() for page in pages):
        raise PdfRejected(REASON_NO_TEXT)


def _clean(text: str) -> str:
    # NUL and lone surrogates break Parquet/Arrow strings and the tokenizer alike.
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
