"""Sender and Receiver in process: two ends joined by real SecureFrames instead of WebRTC.

Fast checks of the application protocol (offers, answers, folders, text, resume) beside the
end-to-end tests in tests/browser/test_cli_peer.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from tallow.peer.crypto import CHANNEL_LABEL, SecureFrames
from tallow.peer.errors import Declined, PeerError, Refused
from tallow.peer.protocol import ChainHash
from tallow.peer.transfer import Offer, Receiver, ResumePoint, Sender, plan_offers
from tests.peer.test_in_process import agree


class End:
    """One side of an in-process encrypted channel, with the PeerLink methods transfers use."""

    def __init__(self, frames: SecureFrames, name: str) -> None:
        self.frames, self.name = frames, name
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.other: End | None = None
        self.problem: PeerError | None = None
        self.controls: list[dict[str, Any]] = []  # what this end sent, for the tests to read

    def _deliver(self, frame: bytes) -> None:
        assert self.other is not None
        message = self.other.frames.open(frame)
        if message is not None:
            self.other.inbox.put_nowait(message)

    def control(self, message: dict[str, Any]) -> None:
        self.controls.append(message)
        self._deliver(self.frames.control(message))

    async def chunk(self, file_id: int, data: bytes) -> None:
        self._deliver(self.frames.chunk(file_id, data))
        await asyncio.sleep(0)

    def poll(self) -> Any:
        return None if self.inbox.empty() else self.inbox.get_nowait()

    async def next_message(self) -> Any:
        message = await self.inbox.get()
        if isinstance(message, PeerError):
            raise message
        return message

    async def flush(self) -> None:
        pass


def pair() -> tuple[End, End]:
    session_i, session_r = agree()
    a = End(SecureFrames(session_i, CHANNEL_LABEL, 1), "Ada")
    b = End(SecureFrames(session_r, CHANNEL_LABEL, 1), "Bo")
    a.other, b.other = b, a
    b.frames.open(a.frames.confirmation())
    a.frames.open(b.frames.confirmation())
    return a, b


class Bar:
    def update(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass


@attrs.frozen
class Outcome:
    sent: list[tuple[str, str]]  # the sender's result lines
    received: list[tuple[str, str]]  # the receiver's result lines ("", text) for a text
    asked: list[Offer]  # what the receiver's person was asked about
    controls: list[dict[str, Any]]  # the sender's control messages
    errors: list[type[BaseException]] = attrs.field(factory=list)  # the sender's, then receiver's


def run_pair(tmp_path: Path, paths: list[Path], text: str | None, answers: list[bool]) -> Outcome:
    """Send `paths` and `text` from one end; receive into tmp_path/out, answering `answers`."""
    a, b = pair()
    outcome = Outcome([], [], [], a.controls)

    async def decide(offer: Offer) -> bool:
        outcome.asked.append(offer)
        return answers.pop(0)

    def received(key: str, value: str) -> None:
        outcome.received.append((key, value))

    async def send() -> None:
        sender = Sender(a, lambda *_: Bar(), lambda k, v: outcome.sent.append((k, v)))  # type: ignore[arg-type]
        for offer in plan_offers(paths, text):
            await sender.send(offer)

    async def main() -> None:
        receiver = Receiver(b, tmp_path / "out", decide, lambda *_: Bar(), received,  # type: ignore[arg-type]
                            lambda text: received("", text))  # fmt: skip
        results = await asyncio.gather(send(), receiver.run(linger=0.2), return_exceptions=True)
        outcome.errors.extend(type(r) for r in results if isinstance(r, BaseException))

    # A thread of its own: in a full run, Playwright's sync API keeps an event loop running in
    # this thread (the browser tests share the session), and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()
    return outcome


def test_files_folder_and_text_arrive_with_their_hashes(tmp_path: Path) -> None:
    (tmp_path / "album" / "sub").mkdir(parents=True)
    (tmp_path / "album" / "sub" / "deep.bin").write_bytes(b"d" * 200_000)
    (tmp_path / "one.bin").write_bytes(b"1" * 70_000)
    paths = [tmp_path / "one.bin", tmp_path / "album"]
    result = run_pair(tmp_path, paths, "héllo", [True, True, True])
    assert result.errors == []
    summaries = ["one.bin", "the folder album (1 files)", "a text (6 bytes)"]
    assert [o.summary for o in result.asked] == summaries
    out = tmp_path / "out"
    assert (out / "one.bin").read_bytes() == b"1" * 70_000
    assert (out / "album" / "sub" / "deep.bin").read_bytes() == b"d" * 200_000
    assert ("", "héllo") in result.received
    digest = hashlib.sha256(b"1" * 70_000).hexdigest()
    assert ("sent", f"one.bin 70000 sha256 {digest}") in result.sent
    assert ("received", f"{out / 'one.bin'} 70000 sha256 {digest}") in result.received


def test_a_declined_offer_stops_the_sender_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "no.bin").write_bytes(b"x")
    result = run_pair(tmp_path, [tmp_path / "no.bin"], None, [False])
    # The sender hears "declined" (exit 4), the receiver ends with what its person said (exit 3).
    assert result.errors == [Refused, Declined]
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "out").glob(".*"))


def test_a_resume_point_sends_only_the_rest_or_starts_over(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1024  # 262,144 bytes: 4 blocks and a bit
    (tmp_path / "big.bin").write_bytes(data)
    (offer,) = plan_offers([tmp_path / "big.bin"], None)
    out = tmp_path / "out"
    out.mkdir()
    kept = 2 * 65_515
    # What the receiver kept matches the sender's file: only the rest is sent. It does not
    # (the file changed since): that file starts over. Either way the whole file arrives.
    for prefix, start in ((data[:kept], kept), (b"\0" * kept, 0)):
        chain = ChainHash()
        chain.update(prefix[:65_515])
        chain.update(prefix[65_515:])
        (out / ".big.bin.tallow-part").write_bytes(prefix)
        point = ResumePoint([["big.bin", len(data)]], 0, kept, chain.hexdigest(),
                            ".big.bin.tallow-part", "big.bin", None)  # fmt: skip
        ResumePoint.path(out, offer.tid()).write_text(json.dumps(attrs.asdict(point)))
        result = run_pair(tmp_path, [tmp_path / "big.bin"], None, [True])
        assert result.errors == [] and result.asked[0].resume_at == kept
        accept = next(m for m in result.controls if m["t"] == "file")
        assert accept == {"t": "file", "id": 1, "index": 0, "offset": start}
        assert (out / "big.bin").read_bytes() == data
        (out / "big.bin").unlink()
        assert list(out.iterdir()) == []  # neither the part nor the resume point is left
