import os
import time

import pytest

from processing import pdf, samples
from tests.unit.processing import pdf_corpus


@pytest.mark.parametrize("extractor", ["pdfium", "pypdf"])
def test_page_count_counts_pages_of_a_text_pdf(extractor):
    assert pdf.page_count(samples.short_pdf("hello", pages=4), extractor=extractor) == 4


@pytest.mark.parametrize("extractor", ["pdfium", "pypdf"])
def test_extract_pages_returns_numbered_text_of_the_range(extractor):
    book = samples.course_book(8)
    pages = pdf.extract_pages(book.pdf, 2, 5, extractor=extractor)
    assert [p.number for p in pages] == [3, 4, 5]
    assert "quokka consensus protocol" in pages[0].text.replace("\n", " ")
    assert "page 4" in pages[1].text
    assert "\r" not in "".join(p.text for p in pages)  # one line-ending convention for every backend


@pytest.mark.parametrize("extractor", ["pdfium", "pypdf"])
def test_extract_pages_clamps_a_range_past_the_end(extractor):
    assert [p.number for p in pdf.extract_pages(samples.short_pdf("x", pages=3), 2, 10, extractor=extractor)] == [3]


def test_backends_agree_on_the_words_of_a_page():
    book = samples.course_book(3)
    pdfium, pypdf = (pdf.extract_pages(book.pdf, 0, 3, extractor=e) for e in ("pdfium", "pypdf"))
    for a, b in zip(pdfium, pypdf, strict=True):
        assert a.text.split() == b.text.split()


@pytest.mark.parametrize(("sample", "reason"), [("encrypted", pdf.REASON_ENCRYPTED), ("corrupt", "corrupt PDF:")])
def test_pdfium_hands_a_document_it_cannot_open_to_pypdf_for_the_reason(sample, reason):
    with pytest.raises(pdf.PdfRejected) as caught:
        pdf.extract_pages(samples.BROKEN_SAMPLES[sample](), 0, 2, extractor="pdfium")
    assert caught.value.reason.startswith(reason)


def test_pdfium_rejects_a_truncated_file_before_reading_it():
    with pytest.raises(pdf.PdfRejected) as caught:
        pdf.extract_pages(samples.truncated_pdf(), 0, 6, extractor="pdfium")
    assert caught.value.reason.startswith("truncated PDF:")


def test_extract_pages_refuses_an_unknown_extractor():
    with pytest.raises(ValueError, match="unknown extractor 'poppler'"):
        pdf.extract_pages(samples.short_pdf("x"), 0, 1, extractor="poppler")  # type: ignore[arg-type]


def test_clean_joins_pdfium_hyphenation_and_line_endings():
    assert pdf._clean("declara\ufffetion\r\nnext\x00 line") == "declaration\nnext line"


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ("not_pdf", pdf.REASON_NOT_PDF),
        ("corrupt", "corrupt PDF:"),
        ("truncated", "truncated PDF:"),
        ("encrypted", pdf.REASON_ENCRYPTED),
        ("empty", pdf.REASON_EMPTY),
    ],
)
@pytest.mark.parametrize("extractor", ["pdfium", "pypdf"])
def test_page_count_rejects_unusable_files_with_a_precise_reason(sample, reason, extractor):
    with pytest.raises(pdf.PdfRejected) as caught:
        pdf.page_count(samples.BROKEN_SAMPLES[sample](), extractor=extractor)
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize("extractor", ["pdfium", "pypdf"])
@pytest.mark.parametrize("sample", ["image_only", "blank"])
def test_require_text_rejects_pdfs_without_a_text_layer(sample, extractor):
    data = samples.BROKEN_SAMPLES[sample]()
    pages = pdf.extract_pages(data, 0, pdf.page_count(data), extractor=extractor)
    with pytest.raises(pdf.PdfRejected) as caught:
        pdf.require_text(pages)
    assert "OCR, which is not supported" in caught.value.reason


def test_owner_password_only_pdf_is_readable():
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(samples.short_pdf("open to read", pages=1))))
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    for extractor in ("pdfium", "pypdf"):
        pages = pdf.extract_pages(out.getvalue(), 0, pdf.page_count(out.getvalue()), extractor=extractor)
        assert "open to read" in pages[0].text


def test_pdfium_extraction_from_many_threads_at_once_gives_the_same_text():
    # PDFium is not thread-safe: without the module's lock this crashes or garbles text.
    from concurrent.futures import ThreadPoolExecutor

    documents = [samples.course_book(4).pdf, samples.short_pdf("another document", pages=4)]
    expected = [pdf.extract_pages(data, 0, 4) for data in documents]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: pdf.extract_pages(documents[i % 2], 0, 4), range(24)))
    assert all(result == expected[i % 2] for i, result in enumerate(results))


def test_a_page_pdfium_fails_on_is_read_by_pypdf(monkeypatch):
    import pypdfium2

    book = samples.course_book(3)
    calls = []
    real = pypdfium2.PdfPage.get_textpage

    def fail_on_second_page(self):
        calls.append(1)
        if len(calls) == 2:
            raise pypdfium2.PdfiumError("injected: damaged content stream")
        return real(self)

    read_by_pypdf = []
    pypdf_page_text = pdf._pypdf_page_text

    def recording(reader, index):
        read_by_pypdf.append(index)
        return pypdf_page_text(reader, index)

    monkeypatch.setattr(pypdfium2.PdfPage, "get_textpage", fail_on_second_page)
    monkeypatch.setattr(pdf, "_pypdf_page_text", recording)
    pages = pdf.extract_pages(book.pdf, 0, 3, extractor="pdfium")
    assert [p.number for p in pages] == [1, 2, 3]
    assert read_by_pypdf == [1]  # that page only, 0-based
    assert "page 2" in pages[1].text and "page 3" in pages[2].text


# ---- the bad-input corpus, through the bounded functions the stream calls ------------------
CORPUS_LIMITS = pdf.Limits(timeout_s=20, memory_mb=512)


@pytest.mark.parametrize("name", list(pdf_corpus.CORPUS))
def test_every_bad_input_gets_a_reason_a_student_understands_within_its_bounds(name):
    build, expected = pdf_corpus.CORPUS[name]
    data = build()
    started = time.monotonic()
    try:
        total = pdf.bounded_page_count(data, CORPUS_LIMITS)
        deadline = time.time() + CORPUS_LIMITS.timeout_s
        pages = pdf.bounded_extract_pages(data, 0, total, CORPUS_LIMITS, deadline=deadline)
        pdf.require_text(pages)
        outcome = "text:" + " ".join(" ".join(page.text.split()) for page in pages)
    except pdf.PdfRejected as exc:
        outcome = exc.reason
    seconds = time.monotonic() - started
    print(f"{name}: {len(data):,} bytes, {seconds:.2f} s -> {outcome[:160]}")
    assert seconds < 2 * CORPUS_LIMITS.timeout_s + 5
    if expected.startswith("text:"):
        assert expected[5:] in outcome, outcome
    else:
        assert outcome.startswith(expected) or expected in outcome, outcome
        assert "Traceback" not in outcome and len(outcome) <= 400


def test_the_10000_page_file_is_refused_by_its_count_before_any_page_is_read():
    with pytest.raises(pdf.PdfRejected, match="10,000 pages and the limit is 5,000"):
        pdf.bounded_page_count(pdf_corpus.ten_thousand_pages(), pdf.Limits(max_pages=5_000))
    assert pdf.bounded_page_count(pdf_corpus.text_pdf(300), pdf.Limits(max_pages=300)) == 300


def test_character_caps_per_page_and_per_document():
    book = samples.course_book(4).pdf
    with pytest.raises(pdf.PdfRejected, match=r"page 1 has .* characters of text and the limit is 500 per page"):
        pdf.bounded_extract_pages(book, 0, 4, pdf.Limits(max_page_chars=500), deadline=time.time() + 20)
    pages = pdf.bounded_extract_pages(book, 0, 4, pdf.Limits(), deadline=time.time() + 20)
    with pytest.raises(pdf.PdfRejected, match="too much text: more than 5,000 characters"):
        pdf.check_text(pages, pdf.Limits(max_chars=5_000))
    assert pdf.check_text(pages, pdf.Limits()) == sum(len(p.text) for p in pages)


def _spin_in_c(pid_file: str) -> None:
    """Writes its pid, then backtracks in the regex engine's C code (no Python signal gets in)."""
    import re

    with open(pid_file, "w") as out:
        out.write(str(os.getpid()))
    re.match(r"(a+)+$", "a" * 64 + "b")


def test_a_timeout_kills_the_parser_process_instead_of_waiting_less(tmp_path):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(pdf.PdfRejected, match="too slow to read: reading pages 1-3 took longer"):
        pdf.run_bounded(_spin_in_c, (str(pid_file),), {}, deadline=time.time() + 1.5, memory_mb=256,
                        what="reading pages 1-3")  # fmt: skip
    assert time.monotonic() - started < 4
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped: no process is left burning a core


def test_a_parser_that_dies_fails_its_document_with_a_reason(tmp_path):
    with pytest.raises(pdf.PdfRejected, match="the PDF reader stopped while counting its pages \\(signal 11\\)"):
        pdf.run_bounded(_segfault, (), {}, deadline=time.time() + 5, memory_mb=256, what="counting its pages")


def _segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def test_outline_gives_the_title_and_each_bookmark_with_its_heading_path_and_page():
    import io

    from pypdf import PdfWriter

    from processing.pdf import outline

    writer = PdfWriter()
    for _ in range(4):
        writer.add_blank_page(200, 200)
    writer.add_metadata({"/Title": "The  manual"})
    writer.add_outline_item("Contents", 0)
    chapter = writer.add_outline_item("1 Overlays", 1)
    writer.add_outline_item("1.1 Pause", 2, parent=chapter)
    writer.add_outline_item("2 Themes", 3)
    buffer = io.BytesIO()
    writer.write(buffer)
    title, entries = outline(buffer.getvalue())
    assert title == "The manual"
    assert entries == [(2, ("1 Overlays",)), (3, ("1 Overlays", "1.1 Pause")), (4, ("2 Themes",))]
    assert outline(b"not a pdf") == ("", [])
