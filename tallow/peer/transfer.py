"""Offers over a PeerLink in the web app's application protocol (tallow.peer.protocol).

Sending: one offer at a time, streamed once accepted, finished when the receiver's `done` for its
last file arrives. Receiving: every offer is put to the person (or taken with --accept) while the
data of accepted ones keeps flowing; a file streams into a hidden part file beside its destination
and gets its real name only once its size and chain hash match the sender's `end`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from tallow.peer.crypto import Chunk
from tallow.peer.errors import Declined, PeerError, Refused, SecurityFailure
from tallow.peer.link import PeerLink
from tallow.peer.protocol import (
    BLOCK_BYTES,
    MAX_FILES_PER_OFFER,
    MAX_WAITING_OFFERS,
    TEXT_MAX_BYTES,
    TEXT_NAME,
    ChainHash,
    check_offer,
    offered_names,
)
from tallow.peer.terminal import Progress

ProgressFactory = Callable[[str, int], Progress]
Report = Callable[[str, str], None]


def free_path(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `name (2)`, `name (3)`... so nothing is overwritten."""
    candidate = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 2
    while candidate.exists():
        candidate = directory / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


# ---- sending -------------------------------------------------------------------------------


@attrs.frozen
class OutgoingFile:
    name: str  # as offered: a file name, or a folder-relative path with "/"
    size: int
    path: Path | None = None  # None for a text
    text: bytes = b""

    def open(self) -> BinaryIO:
        return self.path.open("rb") if self.path else io.BytesIO(self.text)


@attrs.frozen
class Outgoing:
    kind: str
    files: list[OutgoingFile]

    def tid(self) -> str:
        """A transfer id, stable for the same files (names, sizes, modification times): an offer
        made again after a lost connection is recognised and resumed. Random for a text."""
        if self.kind == "text":
            return os.urandom(16).hex()
        identity = [
            (f.name, f.size, f.path.stat().st_mtime_ns if f.path else 0) for f in self.files
        ]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]

    @property
    def label(self) -> str:
        if self.kind == "folder":
            return self.files[0].name.split("/")[0]
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} files"


def _folder_files(folder: Path) -> Iterator[OutgoingFile]:
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                relative = path.relative_to(folder.parent).as_posix()
                yield OutgoingFile(relative, path.stat().st_size, path)


def plan_offers(paths: list[Path], text: str | None) -> list[Outgoing]:
    """Files become one offer, each folder one more, a text one more (the web app's kinds)."""
    offers: list[Outgoing] = []
    files = [p for p in paths if p.is_file()]
    for path in paths:
        if not path.is_file() and not path.is_dir():
            raise PeerError(f"{path}: no such file or folder")
    if files:
        offers.append(Outgoing("files", [OutgoingFile(p.name, p.stat().st_size, p) for p in files]))
    for folder in (p for p in paths if p.is_dir()):
        content = list(_folder_files(folder.resolve()))
        if not content:
            raise PeerError(f"{folder}: the folder has no files to send")
        offers.append(Outgoing("folder", content))
    if text is not None:
        data = text.encode()
        if not data or len(data) > TEXT_MAX_BYTES:
            raise PeerError(f"a text is 1 byte to {TEXT_MAX_BYTES // 1024 // 1024} MiB of UTF-8")
        offers.append(Outgoing("text", [OutgoingFile(TEXT_NAME, len(data), text=data)]))
    for offer in offers:
        if len(offer.files) > MAX_FILES_PER_OFFER:
            raise PeerError(f"{offer.label}: more than {MAX_FILES_PER_OFFER} files in one offer")
    if not offers:
        raise PeerError("nothing to send")
    return offers


class Sender:
    def __init__(self, link: PeerLink, progress: ProgressFactory, report: Report) -> None:
        self.link, self.progress, self.report = link, progress, report
        self._ids = iter(range(1, 2**32))

    async def send(self, offer: Outgoing) -> None:
        """Offer, wait for the answer, stream every file, wait for the last `done`."""
        offer_id = next(self._ids)
        files = [{"name": f.name, "size": f.size} for f in offer.files]
        self.link.control({"t": "offer", "id": offer_id, "tid": offer.tid(),
                           "kind": offer.kind, "files": files})  # fmt: skip
        while (accepted := self._answer(offer_id, await self.link.next_message())) is None:
            pass
        index, offset = self._resume_point(offer, accepted.get("resume"))
        bar = self.progress(offer.label, sum(f.size for f in offer.files))
        try:
            digests = await self._stream(offer_id, offer, bar, index, offset)
            for item, digest in zip(offer.files[index:], digests, strict=True):
                while not self._done(offer_id, await self.link.next_message()):
                    pass
                self.report("sent", f"{item.name} {item.size} sha256 {digest}")
        except asyncio.CancelledError:
            self.link.control({"t": "cancel", "id": offer_id})
            raise
        finally:
            bar.close()  # after the last `done`: the rate shown is the delivered one

    def _answer(self, offer_id: int, message: Any) -> dict[str, Any] | None:
        """The `accept`, once it came; raises on `decline` or `cancel`."""
        if not isinstance(message, dict) or message.get("id") != offer_id:
            return None
        kind = message.get("t")
        if kind == "decline":
            if message.get("reason") == "busy":
                raise Refused(f"{self.link.name} has too many offers waiting")
            raise Refused(f"{self.link.name} declined it")
        if kind == "cancel":
            raise Refused(f"{self.link.name} cancelled it")
        return message if kind == "accept" else None

    def _resume_point(self, offer: Outgoing, resume: Any) -> tuple[int, int]:
        """(file index, byte offset) to start from: the receiver's resume point when the chain
        hash of this side's bytes up to it matches, else the start of that file."""
        if resume is None:
            return 0, 0
        index, offset = resume.get("index"), resume.get("offset")
        valid = (
            type(index) is int and 0 <= index < len(offer.files)
            and type(offset) is int and 0 <= offset <= offer.files[index].size
            and (offset % BLOCK_BYTES == 0 or offset == offer.files[index].size)
        )  # fmt: skip
        if not valid:
            raise SecurityFailure("the receiver asked to resume at an impossible point")
        chain = ChainHash()
        with offer.files[index].open() as source:
            for _ in range(offset // BLOCK_BYTES + (offset % BLOCK_BYTES > 0)):
                chain.update(source.read(BLOCK_BYTES))
        return (index, offset) if chain.hexdigest() == resume.get("hash") else (index, 0)

    def _done(self, offer_id: int, message: Any) -> bool:
        """True on a good `done`; raises on a bad one or a `cancel`."""
        if not isinstance(message, dict) or message.get("id") != offer_id:
            return False
        if message.get("t") == "cancel":
            raise Refused(f"{self.link.name} cancelled it")
        if message.get("t") != "done":
            return False
        if not message.get("ok"):
            raise SecurityFailure(f"{self.link.name}'s check did not match; it discarded the file")
        return True

    async def _stream(
        self, offer_id: int, offer: Outgoing, bar: Progress, first: int, offset: int
    ) -> list[str]:
        """Send files `first`... (the first from `offset`); their SHA-256 hex digests."""
        digests = []
        bar.update(sum(f.size for f in offer.files[:first]) + offset)
        for index, item in enumerate(offer.files[first:], start=first):
            start = offset if index == first else 0
            self.link.control({"t": "file", "id": offer_id, "index": index, "offset": start})
            chain, digest = ChainHash(), hashlib.sha256()
            with item.open() as source:
                while block := source.read(BLOCK_BYTES):
                    chain.update(block)
                    digest.update(block)
                    if source.tell() <= start:
                        continue  # the receiver has it: only hashed
                    try:
                        await self.link.chunk(offer_id, block)
                    finally:  # a cancel that came before the link ended says more than its end
                        while (message := self.link.poll()) is not None:
                            self._done(offer_id, message)  # only a cancel can come now
                    bar.update(len(block))
            self.link.control({"t": "end", "id": offer_id, "index": index, "size": item.size,
                               "hash": chain.hexdigest()})  # fmt: skip
            digests.append(digest.hexdigest())
        return digests


# ---- receiving -----------------------------------------------------------------------------


@attrs.frozen
class Offer:
    """An incoming offer as the person is asked about it."""

    kind: str
    names: list[str]
    size: int
    sender: str
    resume_at: int | None = None  # bytes of the interrupted file already here

    @property
    def summary(self) -> str:
        if self.kind == "text":
            return f"a text ({self.size} bytes)"
        if self.kind == "folder":
            return f"the folder {self.names[0].split('/')[0]} ({len(self.names)} files)"
        return self.names[0] if len(self.names) == 1 else f"{len(self.names)} files"


@attrs.frozen
class ResumePoint:
    """What an interrupted offer left in the receiving folder (saved as JSON beside the part)."""

    files: list[list[Any]]  # [name, size] as offered
    index: int
    offset: int
    chain: str  # chain hash (hex) of the file's first `offset` bytes
    part: str
    target: str
    base: str | None

    @staticmethod
    def path(directory: Path, tid: str) -> Path:
        return directory / f".tallow-resume-{tid}.json"

    @classmethod
    def load(cls, directory: Path, tid: str, files: list[list[Any]]) -> ResumePoint | None:
        """The saved point for this transfer id, if it matches the offer and its part is there."""
        try:
            point = cls(**json.loads(cls.path(directory, tid).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        part = directory / point.part
        if point.files != files or not part.is_file() or part.stat().st_size != point.offset:
            return None
        return point


@attrs.define
class _Incoming:
    offer_id: int
    tid: str
    offer: Offer
    files: list[list[Any]]  # [name, size] as offered
    sizes: list[int]
    resume: ResumePoint | None = None
    state: str = "offered"  # offered | active | done | declined
    base: Path | None = None  # a folder's own directory, chosen at accept
    index: int = -1
    received: int = 0
    target: Path | None = None
    part: Path | None = None
    sink: BinaryIO | None = None
    chain: ChainHash = attrs.field(factory=ChainHash)
    digest: Any = attrs.field(factory=hashlib.sha256)
    text: bytearray = attrs.field(factory=bytearray)
    progress: Progress | None = None

    def suspend(self, directory: Path) -> None:
        """The connection was lost mid-file: keep the part and say where to resume."""
        if self.sink is None or self.part is None or self.target is None:
            return self.discard()
        self.sink.close()
        self.sink = None
        point = ResumePoint(
            self.files, self.index, self.received, self.chain.hexdigest(),
            str(self.part.relative_to(directory)), str(self.target.relative_to(directory)),
            self.base.name if self.base is not None else None,
        )  # fmt: skip
        ResumePoint.path(directory, self.tid).write_text(json.dumps(attrs.asdict(point)))
        self.part = None  # kept
        return self.discard()

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.part is not None:
            self.part.unlink(missing_ok=True)
            self.part = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None


class Receiver:
    """Takes offers from one PeerLink into `directory`, asking `decide(offer)` about each."""

    def __init__(
        self, link: PeerLink, directory: Path, decide: Callable[[Offer], Awaitable[bool]],
        progress: ProgressFactory, report: Report, show_text: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.link, self.directory, self.decide = link, directory, decide
        self.progress, self.report, self.show_text = progress, report, show_text
        self.offers: dict[int, _Incoming] = {}
        self._asking = asyncio.Lock()  # one question at a time
        self._decisions: set[asyncio.Task[None]] = set()
        self._answered = asyncio.Event()
        self.declined = 0

    def _open(self) -> list[_Incoming]:
        return [o for o in self.offers.values() if o.state in ("offered", "active")]

    async def run(self, linger: float) -> None:
        """Until the sender is done: `linger` seconds without an open offer after one finished,
        or the link ending then. Raises if an accepted transfer fails or is cancelled."""
        try:
            while True:
                idle = bool(self.offers) and not self._open()
                try:
                    message = await self._next(linger if idle else None)
                except PeerError:
                    if idle:
                        break
                    raise
                if message is not None:
                    self._handle(message)
                elif idle:
                    break
        except asyncio.CancelledError:
            for incoming in self._open():
                self.link.control({"t": "cancel", "id": incoming.offer_id})
            raise
        except (SecurityFailure, Declined):
            raise
        except PeerError:  # the connection was lost: what arrived is kept for a resume
            for incoming in self._open():
                incoming.suspend(self.directory)
            raise
        finally:
            for task in self._decisions:
                task.cancel()
            for incoming in self.offers.values():
                incoming.discard()
        if self.declined:
            raise Declined(f"you declined {self.declined} offer(s)")

    async def _next(self, seconds: float | None) -> Any:
        """The next message; None after `seconds` or once a person's answer changed
        the set of open offers (so `run` can tell whether it is done)."""
        self._answered.clear()
        getter = asyncio.ensure_future(self.link.next_message())
        answered = asyncio.ensure_future(self._answered.wait())
        try:
            await asyncio.wait({getter, answered}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            answered.cancel()
            if not getter.done():
                getter.cancel()  # a queue get cancelled before it completed loses nothing
        return getter.result() if getter.done() and not getter.cancelled() else None

    def _handle(self, message: Any) -> None:
        if isinstance(message, Chunk):
            self._on_chunk(self._accepted(message.file_id), message.data)
            return
        kind = message.get("t")
        if kind == "offer":
            self._on_offer(message)
        elif kind == "file":
            self._on_file(self._accepted(message.get("id")), message)
        elif kind == "end":
            self._on_end(self._accepted(message.get("id")), message)
        elif kind == "cancel":
            incoming = self.offers.get(message.get("id"))
            if incoming is not None and incoming.state in ("offered", "active"):
                incoming.state = "cancelled"
                incoming.discard()
                raise Refused(f"{self.link.name} cancelled {incoming.offer.summary}")
        elif kind not in ("accept", "decline", "done"):
            raise SecurityFailure(f"unknown message {kind!r}")

    def _on_offer(self, message: dict[str, Any]) -> None:
        check_offer(message)
        offer_id = message["id"]
        if offer_id in self.offers:
            raise SecurityFailure("the peer reused an offer id")
        if sum(o.state == "offered" for o in self.offers.values()) >= MAX_WAITING_OFFERS:
            self.link.control({"t": "decline", "id": offer_id, "reason": "busy"})
            return
        files = message["files"]
        listed = [[f["name"], f["size"]] for f in files]
        point = None
        if message["kind"] != "text":
            point = ResumePoint.load(self.directory, message["tid"], listed)
        offer = Offer(message["kind"], offered_names(message["kind"], files),
                      sum(f["size"] for f in files), self.link.name,
                      point.offset if point else None)  # fmt: skip
        incoming = _Incoming(offer_id, message["tid"], offer, listed, [f["size"] for f in files])
        incoming.resume = point
        self.offers[offer_id] = incoming
        task = asyncio.ensure_future(self._answer(incoming))
        self._decisions.add(task)
        task.add_done_callback(self._decisions.discard)

    async def _answer(self, incoming: _Incoming) -> None:
        # A resumed offer is asked about again: its sender is a new session (another process,
        # another peer id), unlike the web app's resume within one page's session.
        async with self._asking:
            yes = await self.decide(incoming.offer)
        self._answered.set()
        if incoming.state != "offered":  # the sender cancelled meanwhile
            return
        if not yes:
            incoming.state = "declined"
            self.declined += 1
            self.link.control({"t": "decline", "id": incoming.offer_id, "reason": "declined"})
            return
        if incoming.offer.kind == "folder":
            incoming.base = free_path(self.directory, incoming.offer.names[0].split("/")[0])
        return self._accept(incoming)

    def _accept(self, incoming: _Incoming) -> None:
        incoming.state = "active"
        incoming.progress = self.progress(incoming.offer.summary, incoming.offer.size)
        accept: dict[str, Any] = {"t": "accept", "id": incoming.offer_id}
        point = incoming.resume
        if point is not None:
            # Files before `index` are complete; the sender checks the chain hash of the rest.
            self.report("resuming", f"{self.directory / point.target} at byte {point.offset}")
            incoming.base = self.directory / point.base if point.base else None
            incoming.index = point.index - 1
            incoming.received = incoming.sizes[point.index - 1] if point.index else 0
            accept["resume"] = {"index": point.index, "offset": point.offset, "hash": point.chain}
        self.link.control(accept)

    def _accepted(self, offer_id: Any) -> _Incoming:
        """The offer `offer_id`, which this side must have accepted and not finished."""
        incoming = self.offers.get(offer_id)
        if incoming is None or incoming.state != "active":
            raise SecurityFailure("data for an offer that was not accepted")
        return incoming

    def _on_file(self, incoming: _Incoming, message: dict[str, Any]) -> None:
        index, offset, point = message.get("index"), message.get("offset"), incoming.resume
        done_before = incoming.index < 0 or incoming.received == incoming.sizes[incoming.index]
        resumed = point is not None and index == point.index and offset == point.offset
        if index != incoming.index + 1 or (offset != 0 and not resumed) or not done_before:
            raise SecurityFailure("file out of order")
        if index >= len(incoming.sizes):
            raise SecurityFailure("more files than the offer said")
        incoming.index, incoming.received = index, 0
        incoming.chain, incoming.digest = ChainHash(), hashlib.sha256()
        if point is not None and index == point.index:
            incoming.resume = None
            ResumePoint.path(self.directory, incoming.tid).unlink(missing_ok=True)
            if resumed and offset:
                self._continue(incoming, point)
                return
        if incoming.offer.kind == "text":
            return
        name = incoming.offer.names[index]
        if incoming.base is not None:  # a folder: its own directory, chosen when accepted
            target = incoming.base.joinpath(*name.split("/")[1:] or ["file"])
            target.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = free_path(self.directory, name)
        incoming.target = target
        incoming.part = target.with_name(f".{target.name}.tallow-part")
        incoming.sink = incoming.part.open("wb")

    def _continue(self, incoming: _Incoming, point: ResumePoint) -> None:
        """Append to the part an earlier session left, its chain and SHA-256 picked up."""
        incoming.target = self.directory / point.target
        incoming.part = self.directory / point.part
        with incoming.part.open("rb") as earlier:
            while block := earlier.read(1 << 20):
                incoming.digest.update(block)
        incoming.chain = ChainHash(bytes.fromhex(point.chain))
        incoming.received = point.offset
        incoming.sink = incoming.part.open("ab")
        assert incoming.progress is not None
        incoming.progress.update(sum(incoming.sizes[: point.index]) + point.offset)

    def _on_chunk(self, incoming: _Incoming, data: bytes) -> None:
        if incoming.index < 0 or incoming.received + len(data) > incoming.sizes[incoming.index]:
            raise SecurityFailure("more data than the offer said")
        incoming.chain.update(data)
        incoming.digest.update(data)
        incoming.received += len(data)
        if incoming.sink is not None:
            incoming.sink.write(data)
        else:
            incoming.text += data
        assert incoming.progress is not None
        incoming.progress.update(len(data))

    def _on_end(self, incoming: _Incoming, message: dict[str, Any]) -> None:
        index, size = incoming.index, incoming.received
        if message.get("index") != index or index < 0:
            raise SecurityFailure("end of a file that was not sent")
        ok = size == incoming.sizes[index] == message.get("size")
        ok = ok and incoming.chain.hexdigest() == message.get("hash")
        self.link.control({"t": "done", "id": incoming.offer_id, "index": index, "ok": ok})
        if not ok:
            raise SecurityFailure(f"{incoming.offer.names[index]} arrived damaged (hash mismatch)")
        digest = incoming.digest.hexdigest()
        if incoming.sink is not None:
            assert incoming.part is not None and incoming.target is not None
            incoming.sink.close()
            incoming.sink = None
            incoming.part.rename(incoming.target)
            incoming.part = None
            self.report("received", f"{incoming.target} {size} sha256 {digest}")
        else:
            self.report("text", f"{size} bytes sha256 {digest}")
            self.show_text(incoming.text.decode(errors="replace"))
        if index == len(incoming.sizes) - 1:
            incoming.state = "done"
            incoming.discard()
