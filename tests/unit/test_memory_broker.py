"""The embedded broker's contract, with a fake clock: queues, expiry, supersede, order."""

from __future__ import annotations

import pytest

from tallow.broker import Delivery, Member, MemoryBroker, RoomFull
from tallow.config import load
from tests.delivery import deliver


class Inbox:
    def __init__(self, capacity: int = 100) -> None:
        self.frames: list[bytes] = []
        self.capacity = capacity
        self.superseded = False
        self.refusals: list[tuple[Delivery, str | int | None]] = []

    def offer(self, frame: bytes) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append(frame)
        return True

    def supersede(self) -> None:
        self.superseded = True

    def refused(self, result: Delivery, re: str | int | None) -> None:
        self.refusals.append((result, re))


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def broker(clock) -> MemoryBroker:
    settings = load({"TALLOW_RESUME_SECONDS": "30", "TALLOW_RESUME_QUEUE": "3"})
    return MemoryBroker(settings, clock=lambda: clock[0])


async def peer(broker: MemoryBroker, name: str, room: str | None = "R", **kw) -> Inbox:
    inbox = Inbox(**kw)
    await broker.attach(name, f"hash-{name}", inbox)
    if room:
        await broker.join(room, Member(name, name, {}), capacity=10, announce=b"+" + name.encode())
    return inbox


async def test_join_lists_present_members_and_enforces_capacity(broker) -> None:
    await peer(broker, "a")
    inbox = Inbox()
    await broker.attach("b", "hash-b", inbox)
    present = await broker.join("R", Member("b", "B", {"k": 1}), capacity=2, announce=b"+b")
    assert present == [Member("a", "a", {})]
    await broker.attach("c", "hash-c", Inbox())
    with pytest.raises(RoomFull):
        await broker.join("R", Member("c", "c", {}), capacity=2, announce=b"+c")
    assert broker.counts() == (1, 2)


async def test_join_announces_to_exactly_the_members_it_lists(broker) -> None:
    a = await peer(broker, "a")
    b = await peer(broker, "b")
    c = await peer(broker, "c")
    assert a.frames == [b"+b", b"+c"] and b.frames == [b"+c"] and c.frames == []


async def test_delivery_queue_resume_and_order(broker, clock) -> None:
    a = await peer(broker, "a")
    b = await peer(broker, "b")
    assert await deliver(broker, "R", "b", b"1") is Delivery.DELIVERED
    await broker.detach("b", b, unsent=[b"0"])
    assert await deliver(broker, "R", "b", b"2") is Delivery.QUEUED
    assert await deliver(broker, "R", "b", b"3") is Delivery.QUEUED
    assert await deliver(broker, "R", "b", b"4") is Delivery.QUEUE_FULL
    await broker.publish("R", b"all", exclude="a")
    assert a.frames == [b"+b"]  # b's join announcement, not its own broadcast
    claim = await broker.claim("hash-b")
    assert claim is not None and (claim.peer, claim.room) == ("b", "R")
    assert await broker.claim("hash-b") is None  # single use
    again = Inbox()
    await broker.attach("b", "hash-b2", again)
    assert again.frames == [b"0", b"2", b"3"]
    assert await deliver(broker, "R", "nobody", b"x") is Delivery.NOT_FOUND


async def test_grace_expiry_removes_the_peer(broker, clock) -> None:
    await peer(broker, "a")
    b = await peer(broker, "b")
    await broker.detach("b", b)
    clock[0] += 29
    assert await broker.expired() == []
    clock[0] += 2
    gone = await broker.expired()
    assert [(g.peer, g.room) for g in gone] == [("b", "R")]
    assert await deliver(broker, "R", "b", b"x") is Delivery.NOT_FOUND
    assert broker.counts() == (1, 1)
    assert await broker.claim("hash-b") is None


async def test_stale_detach_after_resume_is_ignored(broker) -> None:
    old = await peer(broker, "b")
    await broker.claim("hash-b")
    new = Inbox()
    await broker.attach("b", "hash-new", new)
    await broker.detach("b", old)  # the old connection's late cleanup
    assert await deliver(broker, "R", "b", b"x") is Delivery.DELIVERED
    assert new.frames == [b"x"]


async def test_claim_supersedes_a_live_connection(broker) -> None:
    live = await peer(broker, "b")
    assert (await broker.claim("hash-b")).peer == "b"
    assert live.superseded


async def test_slow_inbox_is_cut_and_its_frames_wait(broker) -> None:
    cut = await peer(broker, "b", capacity=1)
    assert await deliver(broker, "R", "b", b"1") is Delivery.DELIVERED
    assert await deliver(broker, "R", "b", b"2") is Delivery.QUEUED  # cut off, kept for resume
    assert cut.frames == [b"1"]
    fresh = Inbox()
    await broker.claim("hash-b")
    await broker.attach("b", "hash-b3", fresh)
    assert fresh.frames == [b"2"]


async def test_forget_drops_at_once(broker) -> None:
    b = await peer(broker, "b")
    gone = await broker.forget("b", b)
    assert gone is not None and gone.room == "R"
    assert await deliver(broker, "R", "b", b"x") is Delivery.NOT_FOUND
    assert broker.counts() == (0, 0)
