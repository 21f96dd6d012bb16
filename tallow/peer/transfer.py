"""Files over a PeerLink, in the web app's transfer protocol (docs/webapp.md, "Transfers").

    offer  {id, name, size}   sender: chunks tagged with `id` follow
    end    {id, sha256}       sender: all chunks sent; hex SHA-256 of the whole file
    done   {id, ok}           receiver: checksum verified (ok) or not
    abort  {id}               sender cancelled
    reject {id, reason}       receiver declined or cancelled ("cancelled", "too-large")

Files go one after another. The receiver streams to a hidden part file beside the destination and
renames it only once the size and SHA-256 match, so an unverified file never has its real name.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from tallow.peer.crypto import CHUNK_BYTES, Chunk
from tallow.peer.errors import Declined, PeerError, Refused, SecurityFailure
from tallow.peer.link import PeerLink
from tallow.peer.terminal import Progress

MAX_NAME = 200


def safe_name(name: Any) -> str:
    """The web app's rule: no control characters or path separators, at most 200 characters."""
    clean = re.sub(r"[\x00-\x1f\x7f/\\]", "_", str(name or ""))[:MAX_NAME].strip()
    return "file" if clean in ("", ".", "..") else clean


def free_path(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `name (2)`, `name (3)`... so nothing is overwritten."""
    candidate = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists():
        candidate = directory / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


async def send_file(
    link: PeerLink, file_id: int, path: Path, progress: Callable[[str, int], Progress]
) -> str:
    """Send one file and wait for the receiver's verdict; its SHA-256 hex digest."""
    size = path.stat().st_size  # noqa: ASYNC240 (a local stat; reads below block as briefly)
    link.control({"t": "offer", "id": file_id, "name": path.name, "size": size})
    digest = hashlib.sha256()
    bar = progress(path.name, size)
    try:
        with path.open("rb") as source:
            while block := source.read(CHUNK_BYTES):
                digest.update(block)
                await link.chunk(file_id, block)
                bar.update(len(block))
                while (message := link.poll()) is not None:
                    _sender_verdict(link, file_id, message)
        link.control({"t": "end", "id": file_id, "sha256": digest.hexdigest()})
        while not _sender_verdict(link, file_id, await link.next_message()):
            pass
    except asyncio.CancelledError:
        link.control({"t": "abort", "id": file_id})
        raise
    finally:
        bar.close()  # after the receiver's verdict: the rate shown is the delivered one
    return digest.hexdigest()


def _sender_verdict(link: PeerLink, file_id: int, message: Any) -> bool:
    """True once the receiver confirmed the file; raises when it refused it."""
    if not isinstance(message, dict) or message.get("id") != file_id:
        return False
    if message.get("t") == "reject":
        if message.get("reason") == "too-large":
            raise Refused(f"{link.name} cannot take a file this large")
        raise Refused(f"{link.name} declined or cancelled it")
    if message.get("t") == "done":
        if not message.get("ok"):
            raise SecurityFailure(f"{link.name}'s SHA-256 did not match, so it discarded the file")
        return True
    return False


@attrs.frozen
class Offer:
    file_id: int
    name: str
    size: int
    sender: str


@attrs.frozen
class Received:
    path: Path
    size: int
    sha256: str


@attrs.define
class _Incoming:
    offer: Offer
    part: Path
    sink: BinaryIO
    decision: asyncio.Task[bool]
    progress: Progress
    digest: Any = attrs.field(factory=hashlib.sha256)
    received: int = 0


class Receiver:
    """Takes files from one PeerLink into `directory`, asking `decide(offer)` about each."""

    def __init__(
        self, link: PeerLink, directory: Path, decide: Callable[[Offer], Awaitable[bool]],
        progress: Callable[[str, int], Progress],
    ) -> None:  # fmt: skip
        self.link, self.directory, self.decide, self.progress = link, directory, decide, progress
        self.current: _Incoming | None = None

    async def next_file(self, wait: float | None = None) -> Received | None:
        """Receive the next file; raises if it is declined or fails.

        With `wait`, None when no offer starts within `wait` seconds or the link ends first (the
        sender is done): only the time before an offer is bounded, never the transfer.
        """
        try:
            async with asyncio.timeout(wait):
                message = await self.link.next_message()
        except (TimeoutError, PeerError):
            if wait is None:
                raise
            return None
        try:
            while True:
                done = await self._handle(message)
                if done is not None:
                    return done
                message = await self.link.next_message()
        except asyncio.CancelledError:
            if self.current is not None:
                self.link.control({"t": "reject", "id": self.current.offer.file_id,
                                   "reason": "cancelled"})  # fmt: skip
            raise
        finally:
            self._discard()

    async def _handle(self, message: Any) -> Received | None:
        current = self.current
        if isinstance(message, Chunk):
            if current is None or message.file_id != current.offer.file_id:
                raise SecurityFailure("data for an unknown file")
            if current.received + len(message.data) > current.offer.size:
                raise SecurityFailure("more data than the file offer said")
            current.sink.write(message.data)
            current.digest.update(message.data)
            current.received += len(message.data)
            current.progress.update(len(message.data))
            await self._check_decision(current)
            return None
        kind = message.get("t")
        if kind == "offer":
            if current is not None:
                raise SecurityFailure("a second file offer before the first one ended")
            self._start(message)
        elif kind == "abort" and current and message.get("id") == current.offer.file_id:
            raise Refused(f"{self.link.name} cancelled {current.offer.name}")
        elif kind == "end" and current and message.get("id") == current.offer.file_id:
            await current.decision
            await self._check_decision(current)
            return self._finish(current, message.get("sha256"))
        return None

    def _start(self, message: dict[str, Any]) -> None:
        file_id, size = message.get("id"), message.get("size")
        if not isinstance(file_id, int) or not isinstance(size, int) or size < 0:
            raise SecurityFailure("bad file offer")
        offer = Offer(file_id, safe_name(message.get("name")), size, self.link.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        part = self.directory / f".{offer.name}.tallow-part"
        self.current = _Incoming(
            offer, part, part.open("wb"), asyncio.ensure_future(self.decide(offer)),
            self.progress(offer.name, size),
        )  # fmt: skip

    async def _check_decision(self, current: _Incoming) -> None:
        if current.decision.done() and not current.decision.result():
            self.link.control({"t": "reject", "id": current.offer.file_id, "reason": "cancelled"})
            await self.link.flush()
            raise Declined(f"you declined {current.offer.name}")

    def _finish(self, current: _Incoming, expected: Any) -> Received:
        digest = current.digest.hexdigest()
        ok = current.received == current.offer.size and digest == expected
        self.link.control({"t": "done", "id": current.offer.file_id, "ok": ok})
        if not ok:
            raise SecurityFailure(f"{current.offer.name} arrived damaged (SHA-256 mismatch)")
        current.sink.close()
        target = free_path(self.directory, current.offer.name)
        current.part.rename(target)
        self.current = None
        current.progress.close()
        return Received(target, current.received, digest)

    def _discard(self) -> None:
        """Whatever was not verified is deleted: a part file never outlives a failure."""
        current, self.current = self.current, None
        if current is not None:
            current.decision.cancel()
            current.sink.close()
            current.part.unlink(missing_ok=True)
            current.progress.close()


def check_sendable(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise PeerError(f"{path}: not a readable file (folders come with the next protocol)")
