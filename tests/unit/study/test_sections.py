import itertools

from study.models import DocumentText, PageText, stable_id
from study.sections import split_sections


def _doc(pages: int, outline: list[tuple[str, int]] | None = None) -> DocumentText:
    return DocumentText(
        document_id="d",
        version=2,
        course_id="c",
        pages=[PageText(number=n, text=f"Text of page {n}.") for n in range(1, pages + 1)],
        chunks=[],
        outline=outline or [],
    )


def test_split_sections_windows_cover_a_long_document_whole():
    sections = split_sections(_doc(305), section_pages=10)
    assert len(sections) == 31
    assert (sections[0].page_start, sections[-1].page_end) == (1, 305)
    assert all(b.page_start == a.page_end + 1 for a, b in itertools.pairwise(sections))
    assert [s.section_id for s in sections] == [stable_id("d", 2, "section", i) for i in range(31)]


def test_split_sections_follows_the_outline_with_front_matter():
    sections = split_sections(_doc(20, [("Intro", 3), ("Intro detail", 3), ("Streams", 9), ("Bad", 99)]))
    assert [(s.title, s.page_start, s.page_end) for s in sections] == [
        ("Front matter", 1, 2),
        ("Intro", 3, 8),
        ("Streams", 9, 20),
    ]


def test_split_sections_cuts_an_oversized_outline_chapter_into_parts():
    sections = split_sections(_doc(70, [("Everything", 1)]), section_pages=10)
    assert [(s.title, s.page_start, s.page_end) for s in sections] == [
        ("Everything (part 1)", 1, 30),
        ("Everything (part 2)", 31, 60),
        ("Everything (part 3)", 61, 70),
    ]


def test_split_sections_of_an_empty_document_is_empty():
    assert split_sections(_doc(0)) == []
