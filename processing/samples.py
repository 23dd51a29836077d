"""Deterministic sample course PDFs (fpdf2): a long text book with known phrases on known pages,
and the broken files the pipeline must reject with a precise reason.

Nothing binary is committed: the demo, the tests and the benchmark generate what they need.
"""

from __future__ import annotations

import io
import random
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

_WORDS = (
    "data lake table stream batch event schema partition offset checkpoint replay merge commit "
    "transaction isolation snapshot version history compaction vacuum index vector embedding "
    "chunk page document course student teacher lecture quiz answer question summary note "
    "spark driver executor task stage shuffle join broadcast window watermark trigger sink source "
    "kafka topic broker producer consumer group lag retention log segment replica leader follower "
    "delta parquet column row statistics pruning predicate filter projection cache memory disk "
    "latency throughput backpressure idempotent exactly once duplicate failure retry timeout "
    "analysis warehouse dimension fact measure metric dashboard report trend cohort funnel "
    "learning model training inference precision recall ranking relevance fusion hybrid keyword"
).split()

# Phrases that appear exactly once in the book, each on its page (1-based). Made-up terms, so a
# keyword or vector search that finds them found the right page and nothing else.
KNOWN_PHRASES: dict[int, str] = {
    3: "The quokka consensus protocol tolerates byzantine librarians.",
    42: "Marmalade sharding keeps every zebra partition perfectly balanced.",
    137: "A heliotrope watermark closes the sliding window of the lighthouse stream.",
    250: "Turquoise vacuum cycles reclaim the orphaned pelican files.",
    333: "The narwhal checkpoint remembers every offset it has ever committed.",
    499: "Saffron compaction merges the tiny files of the walrus table.",
}


@dataclass(frozen=True)
class SampleBook:
    pdf: bytes
    pages: int
    phrases: dict[int, str] = field(default_factory=dict)


def _paragraph(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def page_text(page: int, *, seed: int = 7, chars: int = 2400) -> str:
    """The body text of one page (deterministic in ``page`` and ``seed``)."""
    rng = random.Random(seed * 1_000_003 + page)  # noqa: S311 - sample text, not secrets
    paragraphs = []
    size = 0
    while size < chars:
        paragraph = _paragraph(rng, rng.randint(3, 5))
        paragraphs.append(paragraph)
        size += len(paragraph)
    phrase = KNOWN_PHRASES.get(page)
    if phrase and seed == 7:
        paragraphs.insert(len(paragraphs) // 2, phrase)
    return "\n".join(paragraphs)


def course_book(
    pages: int = 500, *, seed: int = 7, title: str = "Streaming Lakehouses", chars: int = 2400
) -> SampleBook:
    """A text PDF of ``pages`` pages; ``KNOWN_PHRASES`` are on their pages when seed is 7."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(_EPOCH)  # deterministic bytes
    pdf.set_title(title)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 13)
        pdf.cell(0, 8, f"{title} - chapter {(number - 1) // 20 + 1}, page {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        # Lines wrapped here and placed with text(): fpdf2's multi_cell is ~10x slower.
        y = 30.0
        for paragraph in page_text(number, seed=seed, chars=chars).split("\n"):
            for line in textwrap.wrap(paragraph, width=105):
                pdf.text(12, y, line)
                y += 4.4
            y += 2.0
    phrases = {page: text for page, text in KNOWN_PHRASES.items() if page <= pages} if seed == 7 else {}
    return SampleBook(bytes(pdf.output()), pages, phrases)


def short_pdf(text: str, *, pages: int = 2) -> bytes:
    """A small text PDF whose every page carries ``text`` and its page number."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_EPOCH)
    pdf.set_font("Helvetica", size=11)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Page {number}. {text}")
    return bytes(pdf.output())


def encrypted_pdf(password: str = "s3cret") -> bytes:  # noqa: S107 - a sample file's password
    """A text PDF that needs a user password to open (AES-256)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(short_pdf("This text is locked away."))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def empty_pdf() -> bytes:
    """A structurally valid PDF with zero pages."""
    from pypdf import PdfWriter

    out = io.BytesIO()
    PdfWriter().write(out)
    return out.getvalue()


def blank_pages_pdf(pages: int = 3) -> bytes:
    """Pages with nothing on them: no text to extract."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_EPOCH)
    for _ in range(pages):
        pdf.add_page()
    return bytes(pdf.output())


def image_only_pdf() -> bytes:
    """A 'scanned' page: text drawn into a picture, no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 400), "white")
    ImageDraw.Draw(image).text((40, 180), "Scanned lecture notes: no text layer here", fill="black")
    pdf = FPDF(format="A4")
    pdf.set_creation_date(_EPOCH)
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=190)
    return bytes(pdf.output())


def truncated_pdf() -> bytes:
    """A good PDF cut in half, as an interrupted upload leaves it."""
    data = short_pdf("Half of this file never arrived.", pages=6)
    return data[: len(data) // 2]


def corrupt_pdf() -> bytes:
    """Starts like a PDF and ends like one, garbage in between."""
    rng = random.Random(13)  # noqa: S311 - deterministic garbage
    return b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(4096)) + b"\nstartxref\n99999\n%%EOF\n"


def not_a_pdf() -> bytes:
    """A zip archive (say, a .docx) uploaded under a .pdf name."""
    return b"PK\x03\x04" + b"\x14\x00\x06\x00" + b"word/document.xml" * 20


BROKEN_SAMPLES = {
    "corrupt": corrupt_pdf,
    "truncated": truncated_pdf,
    "encrypted": encrypted_pdf,
    "empty": empty_pdf,
    "blank": blank_pages_pdf,
    "image_only": image_only_pdf,
    "not_pdf": not_a_pdf,
}
