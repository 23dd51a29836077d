"""Extraction benchmark: pypdf and PDFium (pypdfium2) on the four real PDFs of ``bench/corpus.py``.

For each document and backend, in one process pinned to one core: pages/s over the whole
document (``processing.pdf.extract_pages``, the function the stream calls, so the text is
normalised the same way) and characters per page; and how far the two texts agree: per page,
the share of pypdf's words (lower-cased letter/digit runs, counted with multiplicity) found in
PDFium's text, and the reverse, averaged over the pages where pypdf found words. Rounds are
interleaved (backend A, backend B, A, B...) so a noisy neighbour slows both alike; the best
round counts. Never asserts.

``python bench/extract.py [--documents beamer,memoir,microtype,lwarp] [--rounds 2]``
Writes ``.lakehouse/bench/extract.json`` and ``extract.png``.

``extraction_floor`` (used by ``bench/ingest.py``) is one backend's wall time on a document with
every core busy: one process per core, each on its share of the pages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import STATE
from processing.pdf import Extractor

BACKENDS: tuple[Extractor, ...] = ("pdfium", "pypdf")
_WORD = re.compile(r"[^\W_]+")


def cpu_line() -> str:
    """CPU model and the flags that matter for these benches."""
    from processing.calibration import cpu_flags, cpu_model

    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    have = cpu_flags()
    return f"{cpu_model()}; {os.cpu_count()} cores; flags: {' '.join(f for f in wanted if f in have) or 'none'}"


def _words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def agreement(reference: list[str], other: list[str]) -> float:
    """Mean over pages (with words in ``reference``) of the share of its words found in ``other``."""
    shares = []
    for ref, oth in zip(reference, other, strict=True):
        ref_words, other_words = _words(ref), _words(oth)
        total = sum(ref_words.values())
        if total:
            shares.append(sum((ref_words & other_words).values()) / total)
    return sum(shares) / len(shares) if shares else 1.0


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def measure(data: bytes, pages: int, *, rounds: int) -> dict[str, dict]:
    """Best-of-``rounds`` seconds, pages/s, characters/page and texts of each backend."""
    from processing.pdf import extract_pages

    results: dict[str, dict] = {b: {"seconds": []} for b in BACKENDS}
    for _ in range(rounds):
        for backend in BACKENDS:
            started = time.perf_counter()
            texts = [p.text for p in extract_pages(data, 0, pages, extractor=backend)]
            results[backend]["seconds"].append(time.perf_counter() - started)
            results[backend]["texts"] = texts
    for entry in results.values():
        best = min(entry["seconds"])
        entry.update(best_s=best, pages_per_s=pages / best, chars_per_page=sum(map(len, entry["texts"])) / pages)
    return results


def _extract_share(args: tuple[bytes, int, int, Extractor]) -> tuple[int, float]:
    from processing.pdf import extract_pages

    data, start, stop, backend = args
    started = time.perf_counter()
    pages = extract_pages(data, start, stop, extractor=backend)
    return sum(len(p.text) for p in pages), time.perf_counter() - started


def extraction_floor(data: bytes, pages: int, *, backend: Extractor, processes: int | None = None) -> dict:
    """Wall seconds for ``backend`` to read every page with one process per core (each on its
    contiguous share of the pages), the processes started and warmed up beforehand."""
    import multiprocessing

    processes = processes or os.cpu_count() or 1
    bounds = [pages * i // processes for i in range(processes + 1)]
    shares = [(data, bounds[i], bounds[i + 1], backend) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_extract_share, [(data, 0, 1, backend)] * processes)  # imports and first open, untimed
        started = time.perf_counter()
        parts = pool.map(_extract_share, shares)
        seconds = time.perf_counter() - started
    return {"backend": backend, "processes": processes, "seconds": seconds, "pages_per_s": pages / seconds,
            "chars": sum(c for c, _ in parts)}  # fmt: skip


def _plot(rows: list[dict], path: Path) -> None:
    from bench.pngplot import stacked_bars

    bars = [
        (f"{r['document']} {backend} ({r['pypdf_words_in_pdfium']:.3f} agree)", [(backend, r[backend]["pages_per_s"])])
        for r in rows
        for backend in BACKENDS
    ]
    stacked_bars(path, "Extraction pages/s, one core (agreement: pypdf's words in PDFium's text)", bars, unit="p/s")


def main(argv: list[str] | None = None) -> int:
    from bench.corpus import DOCUMENTS, document_path
    from processing.pdf import page_count

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", default=",".join(DOCUMENTS))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    _pin_one_core()
    print(cpu_line())
    print("one process pinned to one core; best of", args.rounds, "interleaved rounds\n")
    rows = []
    header = f"{'document':<10}{'pages':>6}{'pdfium p/s':>12}{'pypdf p/s':>11}{'speed-up':>9}"
    header += f"{'pdfium ch/p':>12}{'pypdf ch/p':>11}{'pypdf⊂pdfium':>14}{'pdfium⊂pypdf':>14}"
    print(header)
    for name in [d.strip() for d in args.documents.split(",") if d.strip()]:
        data = document_path(name).read_bytes()
        pages = page_count(data)
        results = measure(data, pages, rounds=args.rounds)
        row: dict[str, Any] = {
            "document": name,
            "pages": pages,
            **{b: {k: v for k, v in results[b].items() if k != "texts"} for b in BACKENDS},
            "pypdf_words_in_pdfium": agreement(results["pypdf"]["texts"], results["pdfium"]["texts"]),
            "pdfium_words_in_pypdf": agreement(results["pdfium"]["texts"], results["pypdf"]["texts"]),
        }
        rows.append(row)
        pdfium, pypdf = row["pdfium"], row["pypdf"]
        print(
            f"{name:<10}{pages:>6}{pdfium['pages_per_s']:>12.0f}{pypdf['pages_per_s']:>11.1f}"
            f"{pdfium['pages_per_s'] / pypdf['pages_per_s']:>8.1f}x{pdfium['chars_per_page']:>12.0f}"
            f"{pypdf['chars_per_page']:>11.0f}{row['pypdf_words_in_pdfium']:>14.4f}{row['pdfium_words_in_pypdf']:>14.4f}",
            flush=True,
        )
    out = STATE / "bench"
    out.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu_line(), "rounds": args.rounds, "documents": rows}
    (out / "extract.json").write_text(json.dumps(result, indent=2))
    _plot(rows, out / "extract.png")
    print("\npypdf⊂pdfium: share of pypdf's words found in PDFium's text (per page, mean)")
    print(f"wrote {out / 'extract.json'} and {out / 'extract.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
