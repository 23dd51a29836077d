"""The document contract every runtime shares: statuses, the PDF signature, user-facing reasons."""

from __future__ import annotations

from typing import Final, Literal, get_args

# A document version's life: queued (row written, event published) -> processing -> indexed,
# or failed (with a reason the student sees); a replaced version becomes superseded once its
# successor is indexed. Migration 0002_status_checks.sql holds the same values in a CHECK constraint.
DocumentStatus = Literal["queued", "processing", "indexed", "failed", "superseded"]
DOCUMENT_STATUSES: Final[tuple[str, ...]] = get_args(DocumentStatus)
FINAL_DOCUMENT_STATUSES: Final[frozenset[str]] = frozenset({"indexed", "failed", "superseded"})

PDF_MAGIC: Final = b"%PDF-"
REASON_NO_TEXT: Final = "no extractable text; scanned/image-only PDFs need OCR, which is not supported"

# Characters never kept in a display name: controls (Cc), format characters such as the
# right-to-left override U+202E (Cf), separators other than a plain space, and path separators.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
DISPLAY_NAME_MAX_CHARS: Final = 255
ORIGINAL_NAME_MAX_CHARS: Final = 1024


def display_filename(sent: str, *, fallback: str = "upload.pdf") -> str:
    """The name shown for an uploaded file: its last path part, NFC, without control or format
    characters, whitespace collapsed, at most 255 characters (the extension kept)."""
    import unicodedata

    name = unicodedata.normalize("NFC", sent).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = " ".join(name.split()).strip(" .")
    if not name:
        return fallback
    if len(name) > DISPLAY_NAME_MAX_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: DISPLAY_NAME_MAX_CHARS - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:DISPLAY_NAME_MAX_CHARS]
    return name


def original_filename(sent: str) -> str:
    """The name as sent, kept only as data: capped, and with NUL (which PostgreSQL cannot store)
    replaced by U+FFFD."""
    return sent[:ORIGINAL_NAME_MAX_CHARS].replace("\x00", "\ufffd")
