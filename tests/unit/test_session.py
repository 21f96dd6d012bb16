"""The session and its outbox in-process, with trio.testing and a fake socket: order, the one
bound (held frames count), slow readers cut and resumed without loss, partial writes, the
dispatch table and the heartbeat."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from tallow.broker import Delivery, Later, Member, MemoryBroker, Origin
from tallow.config import load
from tallow.observability import metrics
from tallow.signaling import protocol as p
from tallow.signaling.codec import CLOSE, PING
from tallow.signaling.outbox import RELAYED, REPLY, Outbox
from tallow.signaling.service import SignalingService
from tallow.signaling.session import HANDLERS, SILENT_BEATS, Session
from tallow.signaling.transport import Need

REASON = b"too slow reading messages; resume to continue"


class FakeSocket:
    """A transport whose socket buffer holds ``room`` more bytes until the test drains it."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.wire = bytearray()  # everything the client has been sent
        self.silent_beats = 0
        self.farewell: bytes | None = None
        self.aborted = False
        self.interrupted = False
        self._inbox: list[str | None] = []  # what the client sent; None: the connection ended
        self._inline: Callable[[], bool] | None = None  # the session's, while it waits
        self._arrived = trio.Event()
        self._more = trio.Event()

    # the client's side
    def send(self, message: dict[str, Any]) -> None:
        self.silent_beats = 0
        self._arrive(json.dumps(message))

    def drain(self, room: int = 1 << 20) -> None:
        self.room += room
        self._more.set()
        self._more = trio.Event()

    def frames(self) -> list[tuple[int, bytes]]:
        return server_frames(bytes(self.wire))

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for opcode, payload in self.frames() if opcode == 1]

    def _arrive(self, message: str | None) -> None:
        """As the readiness set does: a waiting session takes a message inline, in the
        sender's task; the session's own task wakes only when that says so."""
        self._inbox.append(message)
        if message is None:
            self._wake()
        else:
            self.proceed()

    def _wake(self) -> None:
        self._inline = None
        self._arrived.set()
        self._arrived = trio.Event()

    # the Transport the session sees
    def receive_nowait(self, outbox: Outbox) -> str | bytes | Need | None:
        if self.interrupted:
            return None
        return self._inbox.pop(0) if self._inbox else Need.READ

    def readable(self, inline: Callable[[], bool]) -> Awaitable[None]:
        self._inline = inline
        return self._arrived.wait()

    def proceed(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None and inline():
            self._inline = inline
        else:
            self._wake()

    def interrupt(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            self._arrive(None)

    def write_nowait(self, data: bytes) -> int:
        if self.aborted:
            return len(data)
        written = min(len(data), self.room)
        self.room -= written
        self.wire += data[:written]
        return written

    async def wait_writable(self) -> None:
        while not self.room and not self.aborted:
            await self._more.wait()

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self._arrive(None)
            self.drain(0)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every whole unmasked frame in ``data``."""
    frames, position = [], 0
    while position < len(data):
        size, start = data[position + 1] & 0x7F, position + 2
        if size == 126:
            size, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        elif size == 127:
            size, start = int.from_bytes(data[start : start + 8], "big"), start + 8
        frames.append((data[position] & 0x0F, data[start : start + size]))
        position = start + size
    return frames


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


@pytest.fixture
async def service(nursery: trio.Nursery) -> SignalingService:
    settings = load({"TALLOW_SEND_QUEUE": "16", "TALLOW_RATE_LIMIT": "0"})
    service = SignalingService(settings, MemoryBroker(settings))
    await nursery.start(service.run)
    return service


async def connect(
    service: SignalingService, nursery: trio.Nursery, resume: str | None = None
) -> tuple[FakeSocket, dict[str, Any]]:
    sock = FakeSocket()
    nursery.start_soon(Session(service, sock, "127.0.0.1").run, resume)
    await trio.testing.wait_all_tasks_blocked()
    return sock, sock.messages()[0]


async def test_the_dispatch_table_is_the_list_of_client_types(service, nursery) -> None:
    # Exported from 0 for every type it has, and no other.
    assert set(metrics.messages_handled.counts) == set(HANDLERS)
    sock, _ = await connect(service, nursery)
    for kind in HANDLERS:
        sock.send({"type": kind, "id": kind})
    sock.send({"type": "Signal", "id": "case"})  # types are exact
    await trio.testing.wait_all_tasks_blocked()
    replies = {reply.get("re"): reply for reply in sock.messages()[1:]}
    for kind in HANDLERS:  # every one reaches a handler (here most refuse: no room yet)
        assert replies[kind].get("code") != p.UNKNOWN_TYPE, replies[kind]
    assert replies["case"]["code"] == p.UNKNOWN_TYPE


async def test_welcome_first_then_replies_in_order(service, nursery) -> None:
    sock, welcome = await connect(service, nursery)
    assert welcome["type"] == "welcome" and welcome["limits"]["message_bytes"] == 65536
    for index in range(3):
        sock.send({"type": "ping", "id": index})
    sock.send({"type": "nope"})
    await trio.testing.wait_all_tasks_blocked()
    assert sock.messages()[1:] == [
        {"type": "pong", "re": 0},
        {"type": "pong", "re": 1},
        {"type": "pong", "re": 2},
        {"type": "error", "code": "unknown-type", "message": "unknown message type 'nope'"},
    ]


async def test_a_failing_session_is_logged_and_closed_and_the_others_carry_on(
    service, nursery, caplog
) -> None:
    """A session is its connection's root task: a bug in it must end that session only."""
    broken, _ = await connect(service, nursery)
    healthy, _ = await connect(service, nursery)

    def fail(outbox: Outbox) -> None:
        raise RuntimeError("a bug in the transport")

    broken.receive_nowait = fail  # type: ignore[method-assign]
    broken.send({"type": "ping"})
    healthy.send({"type": "ping", "id": 1})
    await trio.testing.wait_all_tasks_blocked()
    assert "session failed" in caplog.text and "a bug in the transport" in caplog.text
    assert broken.aborted and len(service.sessions) == 1
    assert healthy.messages()[-1] == {"type": "pong", "re": 1}


async def test_frames_that_arrive_during_a_join_come_after_joined(service, nursery) -> None:
    class RacingBroker(MemoryBroker):
        """As Redis can: the room's traffic reaches the joiner before join() returns."""

        async def join(
            self, room: str, member: Member, capacity: int, announce: bytes
        ) -> list[Member]:
            present = await super().join(room, member, capacity, announce=announce)
            await self.publish(room, b'{"type":"broadcast","from":"early","data":1}')
            await trio.lowlevel.checkpoint()
            return present

    service.broker = RacingBroker(service.settings)
    sock, _ = await connect(service, nursery)
    sock.send({"type": "join", "room": "r", "id": "j"})
    await trio.testing.wait_all_tasks_blocked()
    assert [m["type"] for m in sock.messages()] == ["welcome", "joined", "broadcast"]
    assert sock.messages()[1]["re"] == "j"


async def test_a_slow_reader_is_cut_at_the_bound_and_resumes_without_loss(service, nursery) -> None:
    alice, _ = await connect(service, nursery)
    bob, bob_welcome = await connect(service, nursery)
    for sock in (alice, bob):
        sock.send({"type": "join", "room": "r"})
    await trio.testing.wait_all_tasks_blocked()
    bob.room = 0  # bob stops reading
    for index in range(40):
        alice.send({"type": "signal", "to": bob_welcome["peer"], "data": index})
    await trio.testing.wait_all_tasks_blocked()
    sent_before = len(bob.wire)
    bob.drain()  # only the close frame goes out: what bob missed waits for his resume
    await trio.testing.wait_all_tasks_blocked()
    assert server_frames(bytes(bob.wire[sent_before:])) == [(CLOSE, b"\x03\xf5" + REASON)]
    assert bob.aborted
    assert all(m["type"] != "error" for m in alice.messages())  # queued for bob, not refused
    again, welcome = await connect(service, nursery, resume=bob_welcome["resume"])
    assert welcome["resumed"] is True and welcome["peer"] == bob_welcome["peer"]
    signals = [m["data"] for m in again.messages() if m["type"] == "signal"]
    assert signals == list(range(40))  # the outbox's unsent frames first, then the broker's


@pytest.mark.parametrize("immediate", [True, False])
async def test_signals_relay_in_order_whether_the_broker_delivers_at_once_or_later(
    service, nursery, immediate
) -> None:
    """The broker's result at once, or later from a task of the broker's (as Redis gives it for
    a receiver not settled on this replica), while the client's next messages wait: the same
    frames, order and refusal, the error before the next reply."""

    class LaterBroker(MemoryBroker):
        def deliver(self, room: str, to: str, frame: bytes, later: Later, origin: Origin) -> None:
            async def round_trip() -> None:
                await trio.lowlevel.checkpoint()  # as a round trip to Redis would
                later(super(LaterBroker, self).deliver(room, to, frame, later, origin))

            nursery.start_soon(round_trip)

    if not immediate:
        service.broker = LaterBroker(service.settings)
    alice, _ = await connect(service, nursery)
    bob, bob_welcome = await connect(service, nursery)
    for sock in (alice, bob):
        sock.send({"type": "join", "room": "r"})
    await trio.testing.wait_all_tasks_blocked()
    for index in range(5):
        alice.send({"type": "signal", "to": bob_welcome["peer"], "data": index})
    alice.send({"type": "signal", "to": "nobody", "data": 0, "id": 7})
    alice.send({"type": "ping", "id": 8})
    await trio.testing.wait_all_tasks_blocked()
    assert [m["data"] for m in bob.messages() if m["type"] == "signal"] == list(range(5))
    replies = [m for m in alice.messages() if "re" in m]
    assert [(m["type"], m.get("code"), m["re"]) for m in replies] == [
        ("error", p.PEER_NOT_FOUND, 7),
        ("pong", None, 8),
    ]


async def test_a_signal_refused_after_it_was_reported_delivered_is_answered_with_its_id(
    service, nursery
) -> None:
    """A broker that sent a signal on a route says DELIVERED, then finds the target gone: the
    sender's session answers with the error and the signal's id, after what came since."""
    origins: list[Origin] = []

    class RoutingBroker(MemoryBroker):
        def deliver(
            self, room: str, to: str, frame: bytes, later: Later, origin: Origin
        ) -> Delivery:
            origins.append(origin)
            return Delivery.DELIVERED

    service.broker = RoutingBroker(service.settings)
    alice, alice_welcome = await connect(service, nursery)
    alice.send({"type": "join", "room": "r"})
    await trio.testing.wait_all_tasks_blocked()
    alice.send({"type": "signal", "to": "bob", "data": 0, "id": "s1"})
    alice.send({"type": "ping", "id": 2})
    await trio.testing.wait_all_tasks_blocked()
    assert origins == [(alice_welcome["peer"], "s1")]
    (session,) = service.sessions
    session.refused(Delivery.NOT_FOUND, "s1")
    await trio.testing.wait_all_tasks_blocked()
    replies = [m for m in alice.messages() if "re" in m]
    assert [(m["type"], m.get("code"), m["re"]) for m in replies] == [
        ("pong", None, 2),
        ("error", p.PEER_NOT_FOUND, "s1"),
    ]


async def test_heartbeat_pings_a_live_client_and_drops_a_silent_one(
    service, nursery, autojump_clock
) -> None:
    sock, _ = await connect(service, nursery)
    (session,) = service.sessions
    for _ in range(SILENT_BEATS):
        session.heartbeat()
        assert sock.frames()[-1] == (PING, b"") and not sock.aborted
    alice_is_back = {"type": "ping", "id": 1}
    sock.send(alice_is_back)  # a message resets the count: SILENT_BEATS more pings
    await trio.testing.wait_all_tasks_blocked()
    for _ in range(SILENT_BEATS):
        session.heartbeat()
        await trio.testing.wait_all_tasks_blocked()
        assert not sock.aborted
    session.heartbeat()
    await trio.testing.wait_all_tasks_blocked()
    assert sock.aborted and not service.sessions


async def test_outbox_partial_writes_keep_the_stream_whole_and_unstarted_frames_unsent(
    nursery,
) -> None:
    sock = FakeSocket(room=5)
    outbox = Outbox(sock, limit=100, spawn=nursery.start_soon)
    payloads = [b'"%d"' % index * (index + 1) for index in range(20)]
    for index, payload in enumerate(payloads):
        assert outbox.put(payload, RELAYED if index % 2 else REPLY)
    await trio.testing.wait_all_tasks_blocked()
    assert len(sock.wire) == 5  # the first frame is cut after 5 bytes
    assert outbox.unsent() == payloads[1::2]  # the cut frame counts as sent
    sock.drain(200)
    await trio.testing.wait_all_tasks_blocked()
    written = len(server_frames(bytes(sock.wire)[: len(sock.wire)])) - 1  # the last is cut
    assert outbox.unsent() == [p for i, p in enumerate(payloads) if i % 2 and i > written]
    sock.drain()
    await trio.testing.wait_all_tasks_blocked()
    assert [payload for _, payload in sock.frames()] == payloads
    assert outbox.unsent() == []


async def test_held_frames_count_against_the_one_bound(nursery) -> None:
    sock = FakeSocket()
    outbox = Outbox(sock, limit=3, spawn=nursery.start_soon)
    outbox.hold()
    assert all(outbox.put(b"1", RELAYED) for _ in range(3))
    assert not outbox.put(b"1", RELAYED)  # the caller cuts the client off
    outbox.release(b'"first"')
    assert outbox.unsent() == [b"1"] * 3
