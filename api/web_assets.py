"""Serves the built student page (``deploy/web_build.py``): ``/`` and ``/assets/<hashed name>``.

What a CDN needs: hashed assets are ``public, max-age=31536000, immutable`` with an ETag and a
precompressed gzip (or brotli) twin chosen by ``Accept-Encoding`` (``Vary: Accept-Encoding``);
``index.html`` is ``no-cache`` (revalidated by ETag on every load). ``If-None-Match`` answers 304.
nginx serves the same files itself when it is in front (``deploy/nginx/``); this router is for a
single API process and for tests. A name that is not a built asset is a 404 problem.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.errors import NotFound
from deploy.web_build import build_dir

router = APIRouter(include_in_schema=False)

IMMUTABLE = "public, max-age=31536000, immutable"
_HASHED = re.compile(r"^[a-z]+\.[0-9a-f]{16}\.(js|css)$")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
# The page only talks to its own origin (HTTP and the notifications WebSocket).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none';"
    " base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _root(request: Request) -> Path:
    return build_dir(request.app.state.settings)


def _not_modified(request: Request, etag: str) -> bool:
    return etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]


@router.get("/")
def index(request: Request) -> Response:
    """The page itself; never cached without revalidation."""
    path = _root(request) / "index.html"
    try:
        body = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound("The web page is not built: run `lakehouse stack up` or `lakehouse api`.") from exc
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {"Cache-Control": "no-cache", "ETag": etag, **PAGE_HEADERS}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/assets/{name}")
def asset(name: str, request: Request) -> Response:
    """One hashed asset, precompressed when the client accepts it."""
    match = _HASHED.match(name)
    path = _root(request) / "assets" / name
    if match is None or not path.is_file():
        raise NotFound(f"No asset named {name!r}.")
    accepted = request.headers.get("accept-encoding", "").lower()
    encoding = None
    for candidate, suffix in (("br", ".br"), ("gzip", ".gz")):
        if candidate in accepted and path.with_name(name + suffix).is_file():
            encoding, path = candidate, path.with_name(name + suffix)
            break
    digest = name.split(".")[1]
    etag = f'"{digest}-{encoding}"' if encoding else f'"{digest}"'
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag, "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff"}
    if encoding:
        headers["Content-Encoding"] = encoding
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(path.read_bytes(), media_type=_TYPES[match.group(1)], headers=headers)
