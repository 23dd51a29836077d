"""Builds the student web page (``web/``) for serving: content-hashed asset names, gzip twins.

``build_web(settings)`` writes ``<state_dir>/web/assets/app.<sha>.js``, ``style.<sha>.css``
(each with a ``.gz`` twin, and a ``.br`` one only when a brotli module is installed) and an
``index.html`` that references them, last, so a server never sees an index whose assets are
missing. A hashed name never changes content, so it can be cached for a year (``immutable``);
``index.html`` is the only file a client must revalidate. Old hashed files are kept (a page
loaded before a rebuild still finds its assets). Nothing here is committed: the build lives
under the state dir.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import PROJECT_ROOT, Settings

SOURCE = PROJECT_ROOT / "web"
ASSETS = ("app.js", "style.css")


@dataclass(frozen=True)
class WebBuild:
    """Where a build is and what its hashed asset names are (``{"app.js": "app.<sha>.js", ...}``)."""

    root: Path
    assets: dict[str, str]

    @property
    def index(self) -> Path:
        return self.root / "index.html"


def build_dir(settings: Settings) -> Path:
    """The build directory the API and nginx serve from."""
    return settings.stack.state_dir.resolve() / "web"


def _brotli() -> Any:  # an optional module, or None
    try:
        import brotli  # type: ignore[import-not-found]
    except ImportError:
        return None
    return brotli


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def build_web(settings: Settings, *, source: Path = SOURCE) -> WebBuild:
    """Builds the page from ``source`` into the state dir's ``web/`` folder (idempotent)."""
    root = build_dir(settings)
    assets_dir = root / "assets"
    assets_dir.mkdir(parents=True, exist_ok=True)
    brotli = _brotli()
    names: dict[str, str] = {}
    for asset in ASSETS:
        data = (source / asset).read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        stem, suffix = asset.rsplit(".", 1)
        hashed = f"{stem}.{digest}.{suffix}"
        names[asset] = hashed
        target = assets_dir / hashed
        if not target.exists():
            # mtime=0: the same input gives the same .gz bytes (and so the same ETag) on every build.
            _write_atomic(target.with_name(hashed + ".gz"), gzip.compress(data, compresslevel=9, mtime=0))
            if brotli is not None:
                _write_atomic(target.with_name(hashed + ".br"), brotli.compress(data))
            _write_atomic(target, data)
    html = (source / "index.html").read_text(encoding="utf-8")
    for asset, hashed in names.items():
        reference = f'"{asset}"'
        if reference not in html:
            raise ValueError(f"web/index.html does not reference {asset!r}")
        html = html.replace(reference, f'"/assets/{hashed}"')
    _write_atomic(root / "manifest.json", json.dumps(names, indent=2).encode())
    _write_atomic(root / "index.html", html.encode("utf-8"))
    return WebBuild(root=root, assets=names)
