from core.ids import chunk_id
from processing.chunking import CONTEXT_MAX_CHARS, chunk_pages, section_context
from processing.pdf import Page


def _pages(n: int, chars: int = 900) -> list[Page]:
    return [Page(i, " ".join(f"p{i}w{j}" for j in range(chars // 7))) for i in range(1, n + 1)]


def test_chunk_pages_gives_contiguous_indexes_and_stable_ids():
    chunks = chunk_pages(_pages(5), document_id="doc", version=3, chunk_size=400, chunk_overlap=50)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert [c.chunk_id for c in chunks] == [chunk_id("doc", 3, i) for i in range(len(chunks))]
    again = chunk_pages(_pages(5), document_id="doc", version=3, chunk_size=400, chunk_overlap=50)
    assert again == chunks


def test_chunk_pages_keeps_page_spans_of_each_chunk():
    pages = _pages(6, chars=500)
    for chunk in chunk_pages(pages, document_id="d", version=1, chunk_size=700, chunk_overlap=0):
        words = chunk.text.split()
        first_page = int(words[0][1:].split("w")[0])
        last_page = int(words[-1][1:].split("w")[0])
        assert (chunk.page_start, chunk.page_end) == (first_page, last_page), chunk


def test_chunk_pages_spans_a_page_break_when_the_text_does():
    chunks = chunk_pages(_pages(3, chars=300), document_id="d", version=1, chunk_size=1000, chunk_overlap=0)
    assert any(c.page_end > c.page_start for c in chunks)


def test_chunk_pages_skips_blank_pages_and_keeps_real_numbers():
    pages = [Page(1, "alpha " * 20), Page(2, "   "), Page(3, "gamma " * 20)]
    chunks = chunk_pages(pages, document_id="d", version=1, chunk_size=1000, chunk_overlap=0)
    assert (chunks[0].page_start, chunks[-1].page_end) == (1, 3)
    assert chunk_pages([Page(1, "  ")], document_id="d", version=1) == []


def test_chunk_pages_new_version_gets_new_ids():
    v1 = chunk_pages(_pages(2), document_id="d", version=1)
    v2 = chunk_pages(_pages(2), document_id="d", version=2)
    assert not {c.chunk_id for c in v1} & {c.chunk_id for c in v2}


def test_a_chunk_carries_the_heading_path_of_its_section_for_the_embedding_only():
    outline = [(3, ("2 Overlays",)), (3, ("2 Overlays", "2.1 Pause")), (1, ("1 Introduction",))]  # unsorted
    chunks = chunk_pages(
        _pages(4, chars=500), document_id="d", version=1, chunk_size=400, chunk_overlap=0,
        title="Beamer user guide", outline=outline,
    )  # fmt: skip
    by_page = {c.page_start: c for c in chunks}
    assert by_page[1].context == "Beamer user guide. 1 Introduction"
    assert by_page[4].context == "Beamer user guide. 2 Overlays > 2.1 Pause"  # the last entry before it
    assert by_page[4].embedding_text == f"{by_page[4].context}\n{by_page[4].text}"
    assert not by_page[4].text.startswith("Beamer")  # the stored, cited text is the chunk's own


def test_without_an_outline_the_context_is_the_title_or_nothing():
    assert section_context("Manual", [], 5) == "Manual."
    assert section_context("", [(1, ("Intro",))], 5) == "Intro"
    assert section_context("Manual", [(9, ("Late",))], 5) == "Manual."
    plain = chunk_pages(_pages(2), document_id="d", version=1)
    assert all(c.context == "" and c.embedding_text == c.text for c in plain)
    assert len(section_context("T" * 500, [], 1)) == CONTEXT_MAX_CHARS
