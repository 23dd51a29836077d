"""The document contract every runtime shares: statuses, the PDF signature, user-facing reasons."""

from __future__ import annotations

from typing import Final, Literal, get_args

# A document version's life: uploaded (row written, event queued) -> processing -> indexed,
# or failed (with a reason the student sees); a replaced version becomes superseded once its
# successor is indexed. Migration 0002 holds the same values in a CHECK constraint.
DocumentStatus = Literal["uploaded", "processing", "indexed", "failed", "superseded"]
DOCUMENT_STATUSES: Final[tuple[str, ...]] = get_args(DocumentStatus)
FINAL_DOCUMENT_STATUSES: Final[frozenset[str]] = frozenset({"indexed", "failed", "superseded"})

PDF_MAGIC: Final = b"%PDF-"
REASON_NO_TEXT: Final = "no extractable text; scanned/image-only PDFs need OCR, which is not supported"
