"""Samples the phrase half of the retrieval evaluation set: eight consecutive words of one page.

For each document of ``bench.corpus.DOCUMENTS``, pages are read with the platform's own
extraction (``processing.pdf.extract_pages``, pypdf) and, as a cross-check, with pypdfium2. A
random page (fixed seed) and a random position on it give a candidate phrase of eight plain words
(letters and digits only). It is kept only if, after lower-casing and collapsing whitespace,

- it occurs on that page in BOTH extractions (so either backend's text can be searched for it),
- it occurs on no other page of the same document in either extraction, nor in any other
  document of the set (one right answer),
- at least five of its words have three letters or more (not a run of numbers from an index).

``python bench/retrieval/make_phrases.py [--per-document 30] [--seed 20261201]`` rewrites
``bench/retrieval/phrases.jsonl``; the same seed and package version give the same file.
The extracted page texts are cached under ``.lakehouse/bench/retrieval/pages/``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.corpus import DOCUMENTS, document_path
from core.settings import STATE

HERE = Path(__file__).resolve().parent
PHRASES = HERE / "phrases.jsonl"
PAGE_CACHE = STATE / "bench" / "retrieval" / "pages"
SEED = 20261201
PHRASE_WORDS = 8
PLAIN_WORD = re.compile(r"^[A-Za-z0-9]+$")


def normalized(text: str) -> str:
    """Lower-case words split on whitespace, joined by single spaces."""
    return " ".join(text.lower().split())


def extract_pypdf(path: Path) -> list[str]:
    """Text of every page, as the platform extracts it (``processing.pdf.extract_pages``)."""
    import inspect

    from processing.pdf import extract_pages, page_count

    data = path.read_bytes()
    # Once extract_pages has more than one backend, ask for pypdf by name: the set was made with it.
    options = {"extractor": "pypdf"} if "extractor" in inspect.signature(extract_pages).parameters else {}
    pages = extract_pages(data, 0, page_count(data), **options)
    return [page.text for page in pages]


def extract_pdfium(path: Path) -> list[str]:
    """Text of every page with pypdfium2 (the other extraction backend)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    try:
        texts = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return texts
    finally:
        document.close()


def page_texts(name: str, backend: str) -> list[str]:
    """Page texts of one evaluation document (index 0 is page 1), cached on disk."""
    cache = PAGE_CACHE / f"{backend}-{name}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    extract = {"pypdf": extract_pypdf, "pdfium": extract_pdfium}[backend]
    texts = extract(document_path(name))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(texts))
    return texts


def candidate(words: list[str], start: int) -> str | None:
    window = words[start : start + PHRASE_WORDS]
    if len(window) < PHRASE_WORDS or not all(PLAIN_WORD.match(w) for w in window):
        return None
    if sum(1 for w in window if sum(ch.isalpha() for ch in w) >= 3) < 5:
        return None
    return " ".join(window)


def sample_document(name: str, count: int, rng: random.Random, elsewhere: list[str]) -> list[dict]:
    """``count`` phrases of one document, each unique to its page in both extractions and absent
    from ``elsewhere`` (the other documents' normalised texts)."""
    primary = [normalized(t) for t in page_texts(name, "pypdf")]
    other = [normalized(t) for t in page_texts(name, "pdfium")]
    if len(primary) != len(other):
        raise RuntimeError(f"{name}: pypdf reads {len(primary)} pages, pypdfium2 {len(other)}")
    pages = [i for i, text in enumerate(primary) if len(text.split()) >= 60]
    chosen: list[dict] = []
    used_pages: set[int] = set()
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > 100_000:
            raise RuntimeError(f"{name}: found only {len(chosen)} unique phrases")
        index = rng.choice(pages)
        if index in used_pages:
            continue
        words = page_texts(name, "pypdf")[index].split()
        phrase = candidate(words, rng.randrange(max(1, len(words) - PHRASE_WORDS)))
        if phrase is None:
            continue
        key = normalized(phrase)
        if key not in other[index]:
            continue
        if any(key in text for i, text in enumerate(primary) if i != index):
            continue
        if any(key in text for i, text in enumerate(other) if i != index):
            continue
        if any(key in text for text in elsewhere):
            continue
        used_pages.add(index)
        chosen.append({"document": name, "query": phrase, "pages": [index + 1]})
    return sorted(chosen, key=lambda row: row["pages"][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-document", type=int, default=30)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=PHRASES)
    args = parser.parse_args(argv)
    rows = []
    joined = {}
    for name in DOCUMENTS:
        for backend in ("pypdf", "pdfium"):
            texts = page_texts(name, backend)
            print(f"{name}: {len(texts)} pages ({backend})", flush=True)
            joined[name, backend] = normalized(" ".join(texts))
    for name in DOCUMENTS:
        elsewhere = [text for (other, _), text in joined.items() if other != name]
        # One generator per document, seeded from the seed and the name: adding a document
        # does not change the others' phrases.
        rng = random.Random(f"{args.seed}-{name}")
        for number, row in enumerate(sample_document(name, args.per_document, rng, elsewhere), start=1):
            rows.append({"id": f"phrase-{name}-{number:02d}", **row})
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} phrases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
