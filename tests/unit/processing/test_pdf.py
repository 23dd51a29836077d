import pytest

from processing import pdf, samples


def test_page_count_counts_pages_of_a_text_pdf():
    assert pdf.page_count(samples.short_pdf("hello", pages=4)) == 4


def test_extract_pages_returns_numbered_text_of_the_range():
    book = samples.course_book(8)
    pages = pdf.extract_pages(book.pdf, 2, 5)
    assert [p.number for p in pages] == [3, 4, 5]
    assert "quokka consensus protocol" in pages[0].text.replace("\n", " ")
    assert "page 4" in pages[1].text


def test_extract_pages_clamps_a_range_past_the_end():
    assert [p.number for p in pdf.extract_pages(samples.short_pdf("x", pages=3), 2, 10)] == [3]


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
def test_page_count_rejects_unusable_files_with_a_precise_reason(sample, reason):
    with pytest.raises(pdf.PdfRejected) as caught:
        pdf.page_count(samples.BROKEN_SAMPLES[sample]())
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize("sample", ["image_only", "blank"])
def test_require_text_rejects_pdfs_without_a_text_layer(sample):
    data = samples.BROKEN_SAMPLES[sample]()
    pages = pdf.extract_pages(data, 0, pdf.page_count(data))
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
    assert "open to read" in pdf.extract_pages(out.getvalue(), 0, pdf.page_count(out.getvalue()))[0].text
