"""The broker contract every implementation keeps, whatever carries the messages.

A *peer* is a server-chosen id that outlives any one WebSocket: while its connection is attached,
frames for it go to that connection's ``Inbox``; while detached (inside the resume grace period)
they are queued, up to a bound; once the grace period ends the peer *expires* and leaves its room.
Rooms map peer ids to ``Member`` records. Frames are already-encoded JSON bytes, so a message sent
to many peers is serialised once.

Ordering obligations, which every implementation keeps and the signaling layer relies on:

1. **Per sender, in order.** Frames one session hands to ``deliver``/``publish``/``join`` (one
   call at a time) reach each receiver in that order, whatever path each frame takes (handed over
   in process, through Redis, queued while the receiver is away), including across a detach, a
   resume on any replica and a slow reader's cut-off: what the old connection did not write
   (``unsent``) comes first, then what waited, then live traffic.
2. **Queued means delivered later.** ``QUEUED`` frames reach the peer when it resumes, before
   anything sent after them; ``QUEUE_FULL`` and ``NOT_FOUND`` frames are dropped and the sender is
   told; ``BrokerUnavailable`` means the frame was not sent (for ``publish``: maybe not to
   every member, as members on the same replica may have had it already).
3. **Join and announce are one step.** ``join`` sends the announcement to exactly the members it
   returns: a peer that joins meanwhile either is listed or hears the announcement, never both.
4. **A joiner hears nothing of the room before ``join`` returns** except through its ``Inbox``
   (the session holds such frames until its ``joined`` reply is out).
5. **Supersede before attach.** ``claim`` closes a still-open connection of the peer
   (``Inbox.supersede``); frames that connection did not write follow rule 1.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio


class BrokerUnavailable(Exception):
    """The broker cannot be reached right now (for example Redis is down)."""


# Where ``deliver`` sends a result it could not give at once: a Delivery, or the exception the
# delivery failed with (BrokerUnavailable, or a bug). Called from the broker's task: it must
# neither raise nor wait.
Later = Callable[["Delivery | Exception"], object]

# Who sent a signal: the sender's peer id and the request id its answer carries. A frame reported
# delivered may still be refused after all (sent on a route to a replica its target has just
# left, and then found gone or full): the sender hears through ``Inbox.refused``.
Origin = tuple[str, "str | int | None"]


class RoomFull(Exception):
    """The room already holds its maximum number of peers."""


class Delivery(enum.Enum):
    DELIVERED = "delivered"  # handed to the target's connection
    QUEUED = "queued"  # the target is inside its resume grace period; it gets it on resume
    NOT_FOUND = "not-found"  # no such peer in that room
    QUEUE_FULL = "queue-full"  # the target is away and its resume queue is full


@attrs.frozen
class Member:
    """A peer as the others in its room see it."""

    peer: str
    name: str
    meta: Mapping[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"peer": self.peer, "name": self.name, "meta": self.meta}


@attrs.frozen
class Claim:
    """What a resume token gave back: the peer id and the room it is still in, if any."""

    peer: str
    room: str | None


@attrs.frozen
class Expired:
    """A peer whose grace period ended; its room (if any) must hear peer-left."""

    peer: str
    room: str | None


@attrs.frozen
class Interrupted:
    """A peer whose replica died holding frames for it: frames sent to it shortly before may be
    lost, and the others in ``room`` must hear peer-interrupted. The peer itself stays."""

    peer: str
    room: str


class Inbox(Protocol):
    """One connection's side of delivery, implemented by the signaling session."""

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame`` for sending; False when the connection cannot take more."""
        ...

    def supersede(self) -> None:
        """Another connection resumed this peer: close this one without a leave."""
        ...

    def refused(self, result: Delivery, re: str | int | None) -> None:
        """A signal this connection sent (request id ``re``), reported delivered, was refused
        after all: ``result`` (NOT_FOUND or QUEUE_FULL) says why. Called from the broker's task;
        must not raise or wait."""
        ...


class Broker(Protocol):
    name: str
    shared: bool  # True when every replica depends on the same backend (readiness policy)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work (subscriptions, heartbeats). Started once in the server's nursery."""
        ...

    async def ping(self) -> float:
        """Round-trip time in seconds; raises BrokerUnavailable."""
        ...

    async def attach(self, peer: str, resume_hash: str, inbox: Inbox) -> None:
        """``peer`` is now connected here through ``inbox``; flush anything queued for it.

        ``resume_hash`` is the SHA-256 of the token that can resume this peer after a drop.
        """
        ...

    async def claim(self, resume_hash: str) -> Claim | None:
        """Take the peer a resume token stands for (single use), superseding a live connection."""
        ...

    async def detach(self, peer: str, inbox: Inbox, unsent: Sequence[bytes] = ()) -> None:
        """``inbox``'s connection is gone: queue for ``peer`` until resumed or the grace ends.

        ``unsent`` are frames the connection accepted but never wrote; they go first in the queue.
        Does nothing if another connection has attached to ``peer`` since.
        """
        ...

    async def forget(self, peer: str, inbox: Inbox) -> Expired | None:
        """Drop ``peer`` at once (no resume); returns the room it must be announced leaving."""
        ...

    async def join(self, room: str, member: Member, capacity: int, announce: bytes) -> list[Member]:
        """Add ``member`` to ``room`` and send ``announce`` to the members already there, which
        it returns; atomic (obligation 3). Raises RoomFull (then nothing is sent)."""
        ...

    async def leave(self, room: str, peer: str) -> None:
        """Remove ``peer`` from ``room``."""
        ...

    def deliver(
        self, room: str, to: str, frame: bytes, later: Later, origin: Origin
    ) -> Delivery | None:
        """Send ``frame`` to peer ``to`` if it is a member of ``room``: the result now, where it
        needs no waiting (the receiver's connection is in this process and nothing sent to it
        earlier is still on its way), or None and the result later, through ``later`` (once,
        from the broker's own task). Either way the sender's next call keeps rule 1, and the
        session relays with plain calls: no coroutine, no task switch per message. Raises
        BrokerUnavailable when it cannot even start.

        A frame sent on a route (Redis: straight to the replica the target was last seen on) is
        DELIVERED once that replica heard it; should that replica find the target gone from it
        or from ``room``, and the target turn out gone or its queue full, ``origin``'s
        connection hears through ``Inbox.refused``, possibly after the answers to later
        messages."""
        ...

    async def publish(self, room: str, frame: bytes, exclude: str | None = None) -> None:
        """Send ``frame`` to every member of ``room`` except ``exclude``."""
        ...

    async def expired(self) -> Sequence[Expired | Interrupted]:
        """Peers whose grace period has ended since the last call, removed from their rooms;
        and peers whose replica died while they were attached (only with several replicas)."""
        ...

    def counts(self) -> tuple[int, int]:
        """(rooms, peers) as far as this broker can see, for metrics."""
        ...
