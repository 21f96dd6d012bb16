"""The embedded broker: rooms and peers in this process's memory. The default for one machine."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import attrs
import trio

from tallow.broker.base import Claim, Delivery, Expired, Inbox, Later, Member, Origin, RoomFull
from tallow.config import Settings


@attrs.define(eq=False)
class _Peer:
    resume_hash: str
    inbox: Inbox | None
    room: str | None = None
    # Frames kept while away; None until the first (an empty deque is 760 bytes per peer).
    queue: deque[bytes] | None = None
    deadline: float | None = None  # set while detached


def _queue(state: _Peer) -> deque[bytes]:
    """The peer's resume queue, created on first use."""
    if state.queue is None:
        state.queue = deque()
    return state.queue


class MemoryBroker:
    """All state in dicts; every operation completes without waiting, so no locks are needed."""

    name = "memory"
    shared = False

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = settings.resume_seconds
        self._resume_queue = settings.resume_queue
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._by_resume_hash: dict[str, str] = {}
        self._rooms: dict[str, dict[str, Member]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # nothing runs in the background

    async def ping(self) -> float:
        return 0.0

    async def attach(self, peer: str, resume_hash: str, inbox: Inbox) -> None:
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(resume_hash, inbox)
        else:
            self._by_resume_hash.pop(state.resume_hash, None)
            state.resume_hash, state.inbox, state.deadline = resume_hash, inbox, None
        self._by_resume_hash[resume_hash] = peer
        while state.queue and state.inbox is inbox:
            self._send(state, state.queue.popleft())
        if not state.queue:
            state.queue = None

    async def claim(self, resume_hash: str) -> Claim | None:
        peer = self._by_resume_hash.pop(resume_hash, None)
        if peer is None:
            return None
        state = self._peers[peer]
        if state.inbox is not None:
            # The client came back before its old connection was noticed as dead.
            old = state.inbox
            self._set_away(state)
            old.supersede()
        return Claim(peer, state.room)

    async def detach(self, peer: str, inbox: Inbox, unsent: Sequence[bytes] = ()) -> None:
        state = self._peers.get(peer)
        if state is None:
            return
        if state.inbox is inbox:
            self._set_away(state)
        if state.inbox is None and unsent:  # away, now or already (cut off as a slow reader)
            _queue(state).extendleft(reversed(unsent))

    async def forget(self, peer: str, inbox: Inbox) -> Expired | None:
        state = self._peers.get(peer)
        if state is None or state.inbox is not inbox:
            return None
        return self._drop(peer, state)

    async def join(self, room: str, member: Member, capacity: int, announce: bytes) -> list[Member]:
        members = self._rooms.setdefault(room, {})
        if len(members) >= capacity:
            raise RoomFull(room)
        present = list(members.values())
        members[member.peer] = member
        self._peers[member.peer].room = room
        for other in present:
            self._send(self._peers[other.peer], announce)
        return present

    async def leave(self, room: str, peer: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self._rooms[room]
        state = self._peers.get(peer)
        if state is not None and state.room == room:
            state.room = None

    def deliver(self, room: str, to: str, frame: bytes, later: Later, origin: Origin) -> Delivery:
        """Always at once: every connection is in this process."""
        if to not in self._rooms.get(room, ()):
            return Delivery.NOT_FOUND
        return self._send(self._peers[to], frame)

    async def publish(self, room: str, frame: bytes, exclude: str | None = None) -> None:
        for peer in list(self._rooms.get(room, ())):
            if peer != exclude:
                self._send(self._peers[peer], frame)

    async def expired(self) -> list[Expired]:
        now = self._clock()
        gone = [
            peer
            for peer, state in self._peers.items()
            if state.deadline is not None and state.deadline <= now
        ]
        return [self._drop(peer, self._peers[peer]) for peer in gone]

    def counts(self) -> tuple[int, int]:
        return len(self._rooms), sum(len(members) for members in self._rooms.values())

    # --- internals ------------------------------------------------------------------------------

    def _send(self, state: _Peer, frame: bytes) -> Delivery:
        """Hand ``frame`` to the peer's connection, or keep it for the peer's resume."""
        inbox = state.inbox
        if inbox is not None:
            if inbox.offer(frame):
                return Delivery.DELIVERED
            # A reader too slow to keep up is cut off (it will resume); what it missed waits.
            self._set_away(state)
            _queue(state).append(frame)
            return Delivery.QUEUED
        queue = _queue(state)
        if len(queue) >= self._resume_queue:
            return Delivery.QUEUE_FULL
        queue.append(frame)
        return Delivery.QUEUED

    def _set_away(self, state: _Peer) -> None:
        state.inbox, state.deadline = None, self._clock() + self._grace

    def _drop(self, peer: str, state: _Peer) -> Expired:
        del self._peers[peer]
        self._by_resume_hash.pop(state.resume_hash, None)
        room = state.room
        if room is not None:
            members = self._rooms.get(room, {})
            members.pop(peer, None)
            if not members:
                self._rooms.pop(room, None)
        return Expired(peer, room)
