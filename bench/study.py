"""Study-material benchmark: quality and time of the offline generator beside a naive baseline,
on the generated demo book and on real PDFs given with ``--pdf``.

The baseline is "lead": the first sentences of each section as its notes (what a truncating
summariser gives). Both are scored by the same functions (``study.quality``): citation precision
(note words found on the cited pages), section coverage; the offline generator's quiz also gets
answerability (key in its source chunk, chunk found by a word-overlap search standing in for
full-text search) and duplicate rate. Prints the CPU, writes ``.lakehouse/bench/study.json`` and
an SVG chart. Never asserts.

``python bench/study.py [--pages 300] [--pdf path/to/manual.pdf ...] [--items 10]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import STATE, Settings

_WORD = re.compile(r"[a-z0-9]+")


def cpu() -> str:
    from processing.embedding import cpu_flags

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
    return f"{model}; flags: {' '.join(f for f in wanted if f in cpu_flags()) or 'none of ' + ','.join(wanted)}"


def document(pdf: bytes, name: str, settings: Settings):
    """A DocumentText from PDF bytes, pages and chunks made as the ingestion job makes them."""
    import io

    from processing.chunking import chunk_pages
    from processing.pdf import extract_pages, page_count
    from study.models import ChunkText, DocumentText, PageText

    total = page_count(pdf)
    pages = extract_pages(pdf, 0, total)
    chunks = chunk_pages(
        pages,
        document_id=name,
        version=1,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )
    outline: list[tuple[str, int]] = []
    try:
        import pypdf

        reader = pypdf.PdfReader(io.BytesIO(pdf))
        for entry in reader.outline:
            if not isinstance(entry, list):
                outline.append((str(entry.title), reader.get_destination_page_number(entry) + 1))
    except Exception:  # noqa: BLE001 - no outline: page windows
        outline = []
    return DocumentText(
        document_id="00000000-0000-4000-8000-000000000001",
        version=1,
        course_id="bench",
        title=name,
        pages=[PageText(number=p.number, text=p.text) for p in pages],
        chunks=[
            ChunkText(chunk_id=c.chunk_id, page_start=c.page_start, page_end=c.page_end, text=c.text) for c in chunks
        ],
        outline=outline,
    )


def overlap_search(doc):
    """Chunk ids ranked by shared words with the question (a stand-in for the full-text index)."""
    vocab = {c.chunk_id: set(_WORD.findall(c.text.lower())) for c in doc.chunks}

    def search(question: str) -> list[str]:
        words = set(_WORD.findall(question.lower()))
        return sorted(vocab, key=lambda cid: -len(words & vocab[cid]))[:5]

    return search


def lead_baseline(doc, sentences_per_section: int = 3) -> dict:
    """The first sentences of each section, cited to their pages, scored like the generator."""
    from study.quality import notes_citation_precision
    from study.sections import section_pages_of, split_sections
    from study.text import split_sentences

    started = time.perf_counter()
    sections = split_sections(doc)
    notes = [split_sentences(section_pages_of(doc, s))[:sentences_per_section] for s in sections]
    seconds = time.perf_counter() - started
    cited = [sentence for section in notes for sentence in section]
    return {
        "citation_precision": notes_citation_precision(doc, cited) if cited else 0.0,
        "section_coverage": sum(bool(n) for n in notes) / len(sections) if sections else 0.0,
        "seconds": seconds,
    }


def offline(doc, settings: Settings, items: int) -> dict:
    from processing.embedding import get_embedder
    from study.generators import build_generator
    from study.notes import generate_notes
    from study.quiz import generate_quiz

    embedder = get_embedder(settings.embedding)
    generator = build_generator(settings.llm, embedder)
    started = time.perf_counter()
    notes = generate_notes(doc, generator=generator)
    notes_seconds = time.perf_counter() - started
    started = time.perf_counter()
    quiz = generate_quiz(doc, notes, generator=generator, embedder=embedder, items=items, search=overlap_search(doc))
    quiz_seconds = time.perf_counter() - started
    return {
        "citation_precision": notes.quality.citation_precision,
        "section_coverage": notes.quality.section_coverage,
        "sections": notes.quality.sections,
        "key_terms": len(notes.key_terms),
        "seconds": notes_seconds,
        "quiz_items": len(quiz.items),
        "answerability": quiz.quality.answerability,
        "duplicate_rate": quiz.quality.duplicate_rate,
        "distractor_similarity": [quiz.quality.distractor_similarity_min, quiz.quality.distractor_similarity_max],
        "quiz_seconds": quiz_seconds,
        "flagged": notes.quality.flagged or quiz.quality.flagged,
        "sample_items": [
            {"question": i.question, "options": [o.text for o in i.options], "page": i.page} for i in quiz.items[:3]
        ],
    }


def chart(results: list[dict], path: Path) -> None:
    """A grouped bar chart (SVG): citation precision and coverage, baseline vs offline, per document."""
    bar, gap, height = 18, 40, 200
    metrics = [("citation_precision", "#888"), ("section_coverage", "#bbb")]
    width = len(results) * (4 * bar + gap) + 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 90}" font-size="11">']
    x = 50
    for result in results:
        for variant_index, variant in enumerate(("lead", "offline")):
            for metric_index, (metric, colour) in enumerate(metrics):
                value = result[variant][metric]
                h = value * height
                fill = colour if variant == "lead" else ("#2a6" if metric_index == 0 else "#8d8")
                left = x + (variant_index * 2 + metric_index) * bar
                parts.append(f'<rect x="{left}" y="{height - h + 20}" width="{bar - 2}" height="{h}" fill="{fill}"/>')
                parts.append(f'<text x="{left}" y="{height - h + 16}">{value:.2f}</text>')
        parts.append(f'<text x="{x}" y="{height + 40}">{result["name"][:28]}</text>')
        parts.append(f'<text x="{x}" y="{height + 55}">{result["pages"]} pages</text>')
        x += 4 * bar + gap
    parts.append(
        f'<text x="10" y="{height + 80}">grey: lead baseline, green: offline generator; '
        "dark: citation precision, light: section coverage</text></svg>"
    )
    path.write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    from processing import samples

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="pages of the generated demo book")
    parser.add_argument("--pdf", type=Path, action="append", default=[], help="a real PDF (repeatable)")
    parser.add_argument("--items", type=int, default=10)
    args = parser.parse_args(argv)
    settings = Settings()
    print(f"CPU: {cpu()}")
    inputs = [(f"demo book ({args.pages} pages)", samples.course_book(args.pages).pdf)]
    inputs += [(path.name, path.read_bytes()) for path in args.pdf]
    results = []
    for name, pdf in inputs:
        doc = document(pdf, name, settings)
        result = {"name": name, "pages": len(doc.pages), "chunks": len(doc.chunks), "outline": len(doc.outline)}
        result["lead"] = lead_baseline(doc)
        result["offline"] = offline(doc, settings, args.items)
        results.append(result)
        lead, off = result["lead"], result["offline"]
        print(f"\n{name}: {result['pages']} pages, {result['chunks']} chunks, outline entries {result['outline']}")
        print(f"  {'':<10}{'citation':>10}{'coverage':>10}{'seconds':>9}")
        for label, row in (("lead", lead), ("offline", off)):
            print(
                f"  {label:<10}{row['citation_precision']:>10.3f}{row['section_coverage']:>10.3f}{row['seconds']:>9.1f}"
            )
        print(
            f"  ({off['sections']} sections, {off['key_terms']} key terms)\n"
            f"  quiz: {off['quiz_items']} items in {off['quiz_seconds']:.1f} s, answerability "
            f"{off['answerability']:.2f}, duplicate rate {off['duplicate_rate']:.2f}, distractor cosine "
            f"{off['distractor_similarity'][0]:.2f}..{off['distractor_similarity'][1]:.2f}"
        )
        for item in off["sample_items"]:
            print(f"    p.{item['page']}: {item['question'][:100]} | {' / '.join(item['options'])}")
    out = STATE / "bench" / "study.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu(), "results": results}, indent=2, default=str))
    chart(results, out.with_suffix(".svg"))
    print(f"\nwrote {out} and {out.with_suffix('.svg')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
