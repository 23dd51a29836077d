"""PDF text extraction: pure functions over the raw bytes, with precise rejections.

Two backends (``ingest.extractor``): PDFium through pypdfium2 (the default: many times faster than
pypdf on typeset manuals, ``bench/extract.py``) and pypdf. pypdf keeps what it does well:
validation (``page_count``: not a PDF, truncated, encrypted, corrupt, empty, each with a reason a
student can act on), and the fallback for a document or page PDFium cannot read.

``page_count`` runs once per document on the Spark driver (cheap: pypdf parses pages lazily);
``extract_pages`` runs in Spark tasks over page ranges.

Bounded cost per document (``Limits``, from ``ingest.*`` Settings): ``bounded_page_count`` and
``bounded_extract_pages`` run the parsers in a forked child process with a deadline and an
address-space budget; at the deadline the child is killed (SIGKILL: PDFium's C code cannot be
interrupted from Python, so waiting less is not enough), and the document is rejected with a
reason. Page and character caps reject a 10,000-page file or a 5 MB "page" before it reaches
the chunker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from core.documents import PDF_MAGIC, REASON_NO_TEXT

if TYPE_CHECKING:
    from pypdf import PdfReader

# pypdf looks for the header in the first KiB too (some producers put junk before it).
MAGIC_WINDOW = 1024

REASON_NOT_PDF = "not a PDF: the file does not start with the %PDF- header"
REASON_ENCRYPTED = "encrypted PDF: it is password protected; upload it without a password"
REASON_EMPTY = "empty PDF: the document has no pages"

Extractor = Literal["pdfium", "pypdf"]
DEFAULT_EXTRACTOR: Extractor = "pdfium"  # the default of IngestSettings.extractor too

# PDFium is not thread-safe, not even across different documents (it keeps global state), and
# pypdfium2 adds no lock of its own: every use of it in this process holds this lock, and each
# call opens and closes its own document. Spark runs tasks in separate Python worker processes,
# so the lock costs nothing there; it protects threads of one process (an API, a bench).
_PDFIUM_LOCK = threading.Lock()


class PdfRejected(Exception):
    """The PDF cannot be indexed; ``reason`` is human readable and specific."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, as people cite pages
    text: str


def _check_bytes(data: bytes) -> None:
    if PDF_MAGIC not in data[:MAGIC_WINDOW]:
        raise PdfRejected(REASON_NOT_PDF)
    tail = data[-2048:]
    if b"%%EOF" not in tail:
        # pypdf (and PDFium) can often rebuild a cut-off file's xref and read the first pages,
        # which would silently index half a book; a missing end-of-file marker is the sign of
        # truncation.
        raise PdfRejected(f"truncated PDF: no %%EOF marker at the end of its {len(data)} bytes (upload interrupted?)")


def _open(data: bytes) -> PdfReader:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

    _check_bytes(data)
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


def page_count(data: bytes, *, extractor: Extractor = DEFAULT_EXTRACTOR) -> int:
    """Number of pages, or ``PdfRejected`` for a non-PDF, corrupt, truncated, encrypted or empty file.

    With ``extractor="pdfium"`` a file PDFium opens is counted by PDFium (milliseconds; pypdf
    took 1.3-2.6 s on 615- and 1,370-page manuals here, on the driver, before any page is read); a file it
    cannot open goes to pypdf, whose diagnosis gives the reason (or whose count, if it reads it).
    """
    if extractor not in ("pdfium", "pypdf"):
        raise ValueError(f"unknown extractor {extractor!r}: expected 'pdfium' or 'pypdf'")
    _check_bytes(data)
    count = _pdfium_page_count(data) if extractor == "pdfium" else None
    if count is None:
        count = len(_open(data).pages)
    if count == 0:
        raise PdfRejected(REASON_EMPTY)
    return count


def extract_pages(data: bytes, start: int, stop: int, *, extractor: Extractor = DEFAULT_EXTRACTOR) -> list[Page]:
    """Text of pages ``start`` .. ``stop - 1`` (0-based, half open), numbered from 1.

    A page whose content stream is damaged yields empty text rather than failing the whole
    document; ``require_text`` decides afterwards whether enough text came out. With
    ``extractor="pdfium"``, a document PDFium cannot open goes to pypdf (whose rejection, if any,
    says why), and so does a page PDFium fails on.
    """
    if extractor == "pdfium":
        _check_bytes(data)
        pages = _extract_pdfium(data, start, stop)
        if pages is not None:
            return pages
    elif extractor != "pypdf":
        raise ValueError(f"unknown extractor {extractor!r}: expected 'pdfium' or 'pypdf'")
    reader = _open(data)
    return [Page(index + 1, _pypdf_page_text(reader, index)) for index in range(start, min(stop, len(reader.pages)))]


def _pypdf_page_text(reader: PdfReader, index: int) -> str:
    try:
        return _clean(reader.pages[index].extract_text() or "")
    except Exception:  # noqa: BLE001 - one bad page must not lose the other 499
        return ""


def _pdfium_page_count(data: bytes) -> int | None:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except Exception:  # noqa: BLE001 - pypdf says why
            return None
        try:
            return len(document)
        finally:
            document.close()


OUTLINE_MAX_ENTRIES = 20_000  # bookmarks read at most: a hostile outline stays small
OUTLINE_TIMEOUT_S = 10.0  # the outline is an extra: it may not take much of the document's budget
# Not sections: front matter and back matter whose headings would only mislead the context.
OUTLINE_SKIPPED = {"contents", "short contents", "list of figures", "list of tables", "index"}


def outline(data: bytes) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
    """(metadata title, [(1-based first page, heading path)]) from the PDF's bookmarks, in
    document order; ("", []) when PDFium cannot open it or it has none. Feeds the chunks'
    section context (``processing.chunking.section_context``)."""
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except Exception:  # noqa: BLE001 - no outline is not an error
            return "", []
        title = ""
        try:
            title = " ".join(str(document.get_metadata_dict().get("Title") or "").split())
            stack: list[str] = []
            entries: list[tuple[int, tuple[str, ...]]] = []
            for mark in document.get_toc(max_depth=8):
                if len(entries) >= OUTLINE_MAX_ENTRIES:
                    break
                dest = mark.get_dest()
                index = dest.get_index() if dest is not None else None
                heading = " ".join((mark.get_title() or "").split())
                if index is None or not heading:
                    continue
                del stack[mark.level :]
                stack.append(heading)
                if heading.lower() not in OUTLINE_SKIPPED:
                    entries.append((int(index) + 1, tuple(stack)))
            return title, entries
        except Exception:  # noqa: BLE001 - a damaged outline: chunks go without context
            return title, []
        finally:
            document.close()


def bounded_outline(data: bytes, limits: Limits) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
    """``outline`` in a killable child (at most ``OUTLINE_TIMEOUT_S`` within the document's
    budget); ("", []) when it times out, crashes or runs out of memory. Never raises: a document
    whose outline cannot be read is indexed without section context, not rejected."""
    try:
        return run_bounded(outline, (data,), {}, deadline=time.time() + min(limits.timeout_s, OUTLINE_TIMEOUT_S),
                           memory_mb=limits.memory_mb, what="reading its outline")  # fmt: skip
    except Exception:  # noqa: BLE001 - a timeout, crash or failed fork: no context, not a rejection
        return "", []


def _extract_pdfium(data: bytes, start: int, stop: int) -> list[Page] | None:
    """PDFium's text of the range; None if PDFium cannot open the document at all."""
    import pypdfium2 as pdfium

    texts: list[str | None] = []
    with _PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except Exception:  # noqa: BLE001 - encrypted, damaged...: pypdf diagnoses it
            return None
        try:
            for index in range(start, min(stop, len(document))):
                try:
                    page = document[index]
                    try:
                        textpage = page.get_textpage()
                        try:
                            texts.append(textpage.get_text_range())
                        finally:
                            textpage.close()
                    finally:
                        page.close()
                except Exception:  # noqa: BLE001 - this page alone goes to pypdf
                    texts.append(None)
        finally:
            document.close()
    fallback = None
    if None in texts:
        with contextlib.suppress(PdfRejected):  # pypdf cannot read it either: those pages stay empty
            fallback = _open(data)
    pages = []
    for offset, text in enumerate(texts):
        index = start + offset
        if text is None and fallback is not None:
            pages.append(Page(index + 1, _pypdf_page_text(fallback, index)))
        else:
            pages.append(Page(index + 1, _clean(text or "")))
    return pages


def require_text(pages: list[Page]) -> None:
    """Rejects a document none of whose pages has extractable text (scanned or image-only)."""
    if not any(page.text.strip() for page in pages):
        raise PdfRejected(REASON_NO_TEXT)


def _clean(text: str) -> str:
    """The same normalisation for every backend."""
    # PDFium ends lines with CRLF and marks a word hyphenated across lines with U+FFFE (the
    # hyphen and the line break removed: "declara\ufffetion"); dropping the marker keeps the
    # word whole, as a search for it needs. NUL and lone surrogates break Parquet/Arrow strings
    # and the tokenizer alike.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


# ---- bounded cost per document -------------------------------------------------------------
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one document may cost (``IngestSettings``: max_pages, max_chars, max_page_chars,
    extract_timeout_s, extract_memory_mb)."""

    max_pages: int = 5_000
    max_chars: int = 20_000_000
    max_page_chars: int = 100_000
    timeout_s: float = 120.0
    memory_mb: int = 1_024


def check_page_count(count: int, limits: Limits) -> None:
    if count > limits.max_pages:
        raise PdfRejected(
            f"too many pages: the PDF has {count:,} pages and the limit is {limits.max_pages:,} per document;"
            " split it into parts (chapters) and upload those"
        )


def check_text(pages: list[Page], limits: Limits, *, chars_before: int = 0) -> int:
    """Rejects a page or a document over its character cap; returns the characters counted."""
    total = chars_before
    for page in pages:
        if len(page.text) > limits.max_page_chars:
            raise PdfRejected(
                f"page {page.number} has {len(page.text):,} characters of text and the limit is"
                f" {limits.max_page_chars:,} per page (a printed page holds a few thousand): it is not"
                " readable text; export the document again from its source"
            )
        total += len(page.text)
        if total > limits.max_chars:
            raise PdfRejected(
                f"too much text: more than {limits.max_chars:,} characters in this document;"
                " split it into parts and upload those"
            )
    return total


def bounded_page_count(data: bytes, limits: Limits, *, extractor: Extractor = DEFAULT_EXTRACTOR) -> int:
    """``page_count`` in a killable child within the document's deadline, then the page cap."""
    count = run_bounded(page_count, (data,), {"extractor": extractor}, deadline=time.time() + limits.timeout_s,
                        memory_mb=limits.memory_mb, what="counting its pages")  # fmt: skip
    check_page_count(count, limits)
    return count


def bounded_extract_pages(
    data: bytes, start: int, stop: int, limits: Limits, *, deadline: float, extractor: Extractor = DEFAULT_EXTRACTOR
) -> list[Page]:
    """``extract_pages`` of a range in a killable child that must end by ``deadline`` (epoch
    seconds: the document's, shared by all its ranges), then the character caps."""
    pages = run_bounded(_extract_capped, (data, start, stop, limits, extractor), {}, deadline=deadline,
                        memory_mb=limits.memory_mb, what=f"reading pages {start + 1}-{stop}")  # fmt: skip
    check_text(pages, limits)
    return pages


def _extract_capped(data: bytes, start: int, stop: int, limits: Limits, extractor: Extractor) -> list[Page]:
    pages = extract_pages(data, start, stop, extractor=extractor)
    check_text(pages, limits)  # in the child: an oversized text never crosses the pipe
    return pages


def run_bounded(
    fn: Callable[..., T], args: tuple, kwargs: dict[str, Any], *, deadline: float, memory_mb: int, what: str
) -> T:
    """``fn(*args, **kwargs)`` in a forked child: killed at ``deadline``, its address space capped
    at ``memory_mb`` MiB above the parent's. ``PdfRejected`` in the child is re-raised here; a
    timeout, a crash or an exhausted budget become a ``PdfRejected`` with the reason."""
    remaining = deadline - time.time()
    if remaining <= 0:
        raise PdfRejected(_timeout_reason(what))
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, fn, args, kwargs, memory_mb), daemon=True)
    with _PDFIUM_LOCK:  # no other thread is inside PDFium in the copy the child gets
        child.start()
    sender.close()
    try:
        if not receiver.poll(max(0.0, deadline - time.time())):
            raise PdfRejected(_timeout_reason(what))
        try:
            outcome, value = receiver.recv()
        except EOFError:  # the child died without an answer: a crash or the memory budget
            child.join(5)
            raise PdfRejected(_crash_reason(what, child.exitcode, memory_mb)) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receiver.close()
    if outcome == "ok":
        return value
    if outcome == "rejected":
        raise PdfRejected(value)
    if outcome == "memory":
        raise PdfRejected(_crash_reason(what, None, memory_mb))
    raise PdfRejected(f"corrupt PDF: {what} failed: {value}"[:300])


def _timeout_reason(what: str) -> str:
    return (
        f"too slow to read: {what} took longer than this document's time limit; the PDF is unusually"
        " complex or damaged (export it again, or print it to a new PDF)"
    )


def _crash_reason(what: str, exitcode: int | None, memory_mb: int) -> str:
    if exitcode is not None and exitcode < 0 and exitcode != -9:
        return (
            f"too big or damaged to read: the PDF reader stopped while {what} (signal {-exitcode}): it ran out"
            f" of its {memory_mb:,} MiB memory budget (compressed data that expands enormously?) or hit damaged"
            " data; export the document again"
        )
    return (
        f"too big to read: {what} needed more than {memory_mb:,} MiB of memory (compressed data that expands"
        " enormously?); export the document again"
    )


def _child(sender: Any, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], memory_mb: int) -> None:
    import resource

    global _PDFIUM_LOCK  # the inherited one was held during the fork
    _PDFIUM_LOCK = threading.Lock()
    import faulthandler
    import signal

    faulthandler.disable()
    for crash in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL):
        signal.signal(crash, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):  # the budget is on top of what the fork inherited
        with open("/proc/self/statm") as statm:
            inherited = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        budget = inherited + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    try:
        sender.send(("ok", fn(*args, **kwargs)))
    except PdfRejected as exc:
        sender.send(("rejected", exc.reason))
    except MemoryError:
        sender.send(("memory", ""))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as this document's reason
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()
