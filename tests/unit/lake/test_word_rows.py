"""The verbatim side's word index: rows holding every word, ascending, bounded by the rows a
reader knows (another entry may have appended more)."""

from lake.word_rows import WordRows


def test_rows_holding_every_word_in_row_order():
    words = WordRows()
    for text in ["the otter swims", "an otter and a heron", "heron otter", "", "otter"]:
        words.append(text)
    assert words.rows_with_all(["otter"], 5).tolist() == [0, 1, 2, 4]
    assert words.rows_with_all(["otter", "heron"], 5).tolist() == [1, 2]
    assert words.rows_with_all(["heron", "otter", "heron"], 5).tolist() == [1, 2]
    assert words.rows_with_all(["otter", "walrus"], 5).tolist() == []
    assert words.rows_with_all(["otter"], 2).tolist() == [0, 1]  # rows appended after the reader's are left out
    assert len(words) == 5 and words.nbytes > 0


def test_arrays_follow_rows_appended_after_a_read():
    words = WordRows()
    words.append("kernel rank")
    assert words.rows_with_all(["rank"], 1).tolist() == [0]
    words.append("rank")
    assert words.rows_with_all(["rank"], 2).tolist() == [0, 1]
