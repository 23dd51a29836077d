from study.models import PageText
from study.text import blank_term, contains_term, normalise, running_lines, split_sentences


def test_split_sentences_keeps_pages_and_joins_a_sentence_over_a_page_break():
    pages = [
        PageText(number=4, text="Delta Lake keeps a transaction log. Readers see\nsnapshots and"),
        PageText(number=5, text="never half a commit. Kafka stores records!"),
    ]
    sentences = split_sentences(pages, running=set())
    assert [(s.text, s.pages) for s in sentences] == [
        ("Delta Lake keeps a transaction log.", [4]),
        ("Readers see snapshots and never half a commit.", [4, 5]),
        ("Kafka stores records!", [5]),
    ]


def test_split_sentences_drops_running_headers_and_breaks_at_headings():
    bodies = {1: "Watermarks close windows.", 2: "Triggers fire late.", 3: "Sinks write once."}
    pages = [PageText(number=n, text=f"Course Book - page {n}\n{body}") for n, body in bodies.items()]
    assert running_lines(pages) == {"course book - page #"}
    assert [s.text for s in split_sentences(pages)] == list(bodies.values())
    unskipped = split_sentences(pages, running=set())
    assert unskipped[0].text == "Course Book - page 1"  # a heading, never glued to the next sentence


def test_term_helpers_match_whole_words_in_any_case():
    assert contains_term("The Delta\nLake log", "delta lake")
    assert not contains_term("deltalake", "delta lake")
    assert not contains_term("streaming", "stream")
    assert blank_term("Kafka and kafka.", "kafka") == "_____ and _____."
    assert normalise("  Exactly-Once, semantics! ") == "exactly-once semantics"
