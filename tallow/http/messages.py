"""Plain request and response values: route handlers take a Request and return a Response."""

from __future__ import annotations

import re
import uuid
from typing import Any

import attrs
import orjson


@attrs.frozen
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    client: str
    https: bool
    request_id: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@attrs.define
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **kwargs: Any) -> Response:
        return cls(status, orjson.dumps(payload) + b"\n", "application/json", **kwargs)

    @classmethod
    def text(cls, text: str, status: int = 200, **kwargs: Any) -> Response:
        return cls(status, text.encode(), **kwargs)


def error(status: int, code: str, message: str) -> Response:
    """A JSON error body with a stable ``code`` and a human ``message``."""
    return Response.json({"error": code, "message": message}, status)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    """The client's (or proxy's) X-Request-ID when it is a sane token, else a fresh one."""
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
