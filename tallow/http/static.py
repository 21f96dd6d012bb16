"""The web UI: files from the package's static/ folder (or TALLOW_STATIC_DIR), safely served.

Files are read once and kept in memory with their ETag (the UI is small). Names that carry a
content hash (``app-3f9a1c2b.js``) never change, so browsers may cache them for a year; every
other file is revalidated with ETag / Last-Modified on each use.
"""

from __future__ import annotations

import hashlib
import re
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from stat import S_ISREG

import attrs
import trio

from tallow.http.messages import Request, Response

PACKAGE_STATIC = Path(__file__).resolve().parent.parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
_FINGERPRINTED = re.compile(r"-[0-9a-fA-F]{8,}\.[A-Za-z0-9]+$")
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
IMMUTABLE = b"public, max-age=31536000, immutable"


@attrs.frozen
class _File:
    body: bytes
    etag: str
    mtime: float
    content_type: str


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[str, _File] = {}

    def _locate(self, url_path: str) -> Path | None:
        """The file for a URL path, or None. Only plain names below the root ever match."""
        relative = url_path.lstrip("/") or "index.html"
        segments = relative.split("/")
        if not all(_SAFE_SEGMENT.fullmatch(segment) for segment in segments):
            return None  # rejects "..", hidden files, backslashes, NUL and empty segments
        path = self.root.joinpath(*segments)
        if path.suffix not in CONTENT_TYPES or not path.is_relative_to(self.root):
            return None
        return path

    async def _load(self, key: str, path: Path) -> _File | None:
        try:
            stat = await trio.Path(path).stat()
        except OSError:
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.mtime == stat.st_mtime:
            return cached
        if not S_ISREG(stat.st_mode):  # a regular file, not a folder
            return None
        body = await trio.Path(path).read_bytes()
        loaded = _File(
            body,
            '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            stat.st_mtime,
            CONTENT_TYPES[path.suffix],
        )
        self._cache[key] = loaded
        return loaded

    async def respond(self, request: Request) -> Response | None:
        """The response for a GET/HEAD of a UI file, or None when there is no such file."""
        path = self._locate(request.path)
        if path is None:
            return None
        file = await self._load(request.path, path)
        if file is None:
            return None
        headers = [
            (b"etag", file.etag.encode()),
            (b"last-modified", formatdate(file.mtime, usegmt=True).encode()),
            (b"cache-control", IMMUTABLE if _FINGERPRINTED.search(path.name) else b"no-cache"),
        ]
        if _not_modified(request, file):
            return Response(304, b"", file.content_type, headers)
        return Response(200, file.body, file.content_type, headers)


def _not_modified(request: Request, file: _File) -> bool:
    if_none_match = request.header("if-none-match")
    if if_none_match is not None:
        return (
            file.etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
        )
    since = request.header("if-modified-since")
    if since is None:
        return False
    try:
        return int(file.mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False
