"""The data channel's application protocol (docs/webapp.md, "Application protocol"): the rules
both ends check, shared by sending and receiving.

Offers hold files, a folder (relative paths) or a text; nothing flows until the receiver accepts;
each file opens with `file`, streams as data frames of exactly one chain block each, and closes
with `end` (its size and chain hash), which the receiver answers with `done`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from tallow.peer.crypto import CHUNK_BYTES
from tallow.peer.errors import SecurityFailure

BLOCK_BYTES = CHUNK_BYTES  # a chain block is exactly one data frame's payload
KINDS = ("files", "folder", "text")
TEXT_NAME = "text.txt"
TEXT_MAX_BYTES = 1024 * 1024
MAX_FILES_PER_OFFER = 256
MAX_WAITING_OFFERS = 16
MAX_PATH_DEPTH = 32
TID = re.compile(r"[0-9a-f]{32}")
_SEPARATORS = re.compile(r'[\\:*?"<>|]')


class ChainHash:
    """h_0 = SHA-256("tallow/v1 file"); h_(k+1) = SHA-256(h_k || SHA-256(B_k)) per block."""

    def __init__(self, tail: bytes | None = None) -> None:
        """A new chain, or one continued from `tail` (an earlier `hexdigest()`, as bytes)."""
        self._tail = tail or hashlib.sha256(b"tallow/v1 file").digest()

    def update(self, block: bytes) -> None:
        self._tail = hashlib.sha256(self._tail + hashlib.sha256(block).digest()).digest()

    def hexdigest(self) -> str:
        return self._tail.hex()


def _printable(text: str) -> str:
    """Without control and format characters (bidi overrides, zero-width ones)."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))


def safe_segment(segment: Any, fallback: str = "file") -> str:
    """One path segment from a peer: no separators or reserved characters, never . or .."""
    clean = _SEPARATORS.sub("", _printable(str(segment or ""))).replace("/", "_").strip()[:200]
    return clean if clean not in ("", ".", "..") else fallback


def safe_path(path: Any) -> str:
    """A relative path from a peer: each segment made safe, empty ones dropped, at most 32 deep."""
    segments = [s for s in str(path or "").split("/") if s not in ("", ".")][-MAX_PATH_DEPTH:]
    return "/".join(safe_segment(s) for s in segments) if segments else "file"


def safe_name(name: Any) -> str:
    """A display name from a peer."""
    return _printable(str(name or "")).strip()[:64] or "Someone"


def _is_size(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 2**53 - 1


def check_offer(message: dict[str, Any]) -> None:
    """Raise SecurityFailure unless `message` is a well-formed offer (the web app's checkOffer)."""
    files = message.get("files")
    ok = (
        type(message.get("id")) is int
        and 0 <= message["id"] < 2**32
        and isinstance(message.get("tid"), str)
        and TID.fullmatch(message["tid"]) is not None
        and message.get("kind") in KINDS
        and isinstance(files, list)
        and 1 <= len(files) <= MAX_FILES_PER_OFFER
        and all(
            isinstance(f, dict) and isinstance(f.get("name"), str) and _is_size(f.get("size"))
            for f in files
        )
        and (message["kind"] != "text" or (len(files) == 1 and files[0]["size"] <= TEXT_MAX_BYTES))
    )
    if not ok:
        raise SecurityFailure("the peer sent a malformed offer")


def offered_names(kind: str, files: list[dict[str, Any]]) -> list[str]:
    """Where each offered file goes, relative to the receiving folder, made safe."""
    if kind == "files":
        return [safe_segment(f["name"].split("/")[-1]) for f in files]
    return [safe_path(f["name"]) for f in files]
