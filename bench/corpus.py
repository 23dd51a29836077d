"""Real, typeset PDFs for the benches: Debian's ``texlive-latex-recommended-doc`` package.

The package is downloaded with ``apt-get download`` (no root, no system install) and unpacked
with ``dpkg-deb -x`` into the per-machine cache, once; nothing of it is committed. Its PDFs are
LaTeX package manuals written by their authors (user guides with prose, reference manuals with
code), which is what students upload and what a generated book does not resemble.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "texlive-latex-recommended-doc"
VERSION = "2022.20230122-3"  # Debian bookworm's; the evaluation set's pages refer to it
DOC_ROOT = Path("usr/share/doc/texlive-doc")

# The evaluation set's documents, by short name: two user guides with prose, a reference
# manual with code and a large mixed one (pages as of VERSION).
DOCUMENTS = {
    "beamer": "latex/beamer/beameruserguide.pdf",  # 234 pages, user guide
    "memoir": "latex/memoir/memman.pdf",  # 615 pages, user guide / reference
    "microtype": "latex/microtype/microtype-code.pdf",  # 266 pages, documented code
    "lwarp": "latex/lwarp/lwarp.pdf",  # 1,370 pages, guide + documented code
}


def cache_dir() -> Path:
    base = os.environ.get("LAKEHOUSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lakehouse"
    )
    return Path(base) / "bench" / f"{PACKAGE}-{VERSION}"


def ensure_corpus() -> Path:
    """The unpacked package's ``texlive-doc`` directory, downloading it on first use."""
    target = cache_dir()
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                ["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=tmp, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(f"apt-get download {PACKAGE}={VERSION} failed: {proc.stderr.strip()[-500:]}")
            (deb,) = Path(tmp).glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        done.touch()
    return target / DOC_ROOT


def document_path(name: str) -> Path:
    """The PDF of one evaluation document (``beamer``, ``memoir``, ``microtype``, ``lwarp``)."""
    return ensure_corpus() / DOCUMENTS[name]


if __name__ == "__main__":
    for short in DOCUMENTS:
        print(short, document_path(short))
