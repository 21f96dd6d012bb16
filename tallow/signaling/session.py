"""One signaling connection: reads client messages, answers them and relays to the room.

A Session owns two tasks in its own nursery: the reader (client -> broker) and the writer
(outbox -> client). Everything sent to the client goes through the bounded outbox, so replies and
relayed messages keep one order and a slow reader can never make the server buffer without bound.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio

from tallow.broker import BrokerUnavailable, Delivery, Member, RoomFull
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.ratelimit import TokenBucket
from tallow.signaling.rooms import canonical, new_code

if TYPE_CHECKING:
    from tallow.signaling.service import SignalingService

log = logging.getLogger("tallow.signaling")

CLOSE_TIMEOUT = 5.0  # seconds to hand over the close frame before giving up on a client
WRITE_BATCH = 64  # most frames the writer sends in one go
RELAYED, REPLY, FLUSH = 0, 1, 2  # kinds of outbox entries (FLUSH: finish a partial write)


# Counter children looked up once: labels() takes a lock and a dict lookup on every call.
_HANDLED = {kind: metrics.messages_relayed.labels(kind) for kind in p.CLIENT_TYPES}


class Transport(Protocol):
    """A WebSocket as the session sees it, whatever server library carries it."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the client has gone."""
        ...

    async def send(self, frames: Sequence[bytes]) -> None:
        """Send each frame as one text message, in order."""
        ...

    def send_now(self, frame: bytes) -> bool | None:
        """Try to write ``frame`` without waiting: None (nothing written), True (all of it),
        False (part of it: the transport's next ``send`` writes the rest first)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Session:
    def __init__(self, service: SignalingService, transport: Transport, client_ip: str) -> None:
        self.service = service
        self.settings = service.settings
        self.transport = transport
        self.client_ip = client_ip
        self.peer = ""
        self.room: str | None = None
        # (bytes, kind): relayed frames came from other peers and must survive a reconnect.
        # Live traffic may fill ``send_queue`` entries; a resumed peer's backlog (at most the
        # resume queue plus what its last connection left unsent) is taken in whole on attach.
        self._outbox_in, self._outbox = trio.open_memory_channel[tuple[bytes, int]](
            2 * self.settings.send_queue + self.settings.resume_queue
        )
        self._restoring = False
        self._unsent = 0  # outbox entries not yet written, including the batch being written
        self._in_flight: list[tuple[bytes, int]] = []  # the batch the writer is writing
        self._held: list[bytes] | None = None  # frames that arrived while a join was in flight
        self._allowance = self.settings.send_queue  # frames the outbox may hold before a cut
        self._bucket = TokenBucket(self.settings.rate_limit, self.settings.rate_burst)
        self._strikes = 0
        self._scope = trio.CancelScope()
        self._close_code = p.CLOSE_GOING_AWAY
        self._close_reason = "bye"
        self._client_gone = False

    # --- the broker's Inbox -------------------------------------------------------------------

    def offer(self, frame: bytes) -> bool:
        if self._held is not None:  # joining: the room's traffic waits for our `joined`
            self._held.append(frame)
            return True
        if self._unsent == 0 and not self._restoring:
            written = self.transport.send_now(frame)  # nothing queued or in flight: order holds
            if written:
                return True
            if written is False:  # partly written: wake the writer to finish it
                return self._push(b"", FLUSH)
        backlog = self._outbox.statistics().current_buffer_used
        if backlog >= self._allowance and not self._restoring:
            return self._cut_slow_reader()
        return self._push(frame, RELAYED)

    def supersede(self) -> None:
        self.close_soon(p.CLOSE_SUPERSEDED, "resumed on another connection")

    def _push(self, data: bytes, kind: int) -> bool:
        try:
            self._outbox_in.send_nowait((data, kind))
        except trio.WouldBlock:
            return self._cut_slow_reader()
        self._unsent += 1
        return True

    def _cut_slow_reader(self) -> bool:
        self.close_soon(p.CLOSE_TRY_AGAIN, "too slow reading messages; resume to continue")
        return False

    # --- lifecycle ----------------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Close with ``code`` as soon as the session's tasks unwind (callable from anywhere)."""
        if not self._scope.cancel_called:
            self._close_code, self._close_reason = code, reason
            self._scope.cancel()

    async def _open(self, resume_token: str | None) -> bool:
        """Claim or create the peer, queue the welcome, attach to the broker; True if resumed."""
        broker = self.service.broker
        claim = await broker.claim(token_hash(resume_token)) if resume_token else None
        self.peer = claim.peer if claim else secrets.token_urlsafe(16)
        self.room = claim.room if claim else None
        token = secrets.token_urlsafe(32)
        welcome: dict[str, Any] = {
            "type": "welcome",
            "v": p.VERSION,
            "peer": self.peer,
            "resume": token,
            "heartbeat": self.settings.heartbeat_seconds,
            "limits": {
                "message_bytes": self.settings.max_message_bytes,
                "room_peers": self.settings.max_room_peers,
            },
        }
        if claim:
            welcome.update(resumed=True, room=claim.room)
            metrics.resumes.inc()
        # The welcome goes first into the outbox, before anything queued for a resumed peer.
        self._push(p.encode(welcome), REPLY)
        self._restoring = True
        try:
            await broker.attach(self.peer, token_hash(token), self)
        finally:
            self._restoring = False
            self._allowance += self._outbox.statistics().current_buffer_used
        return claim is not None

    async def run(self, resume_token: str | None) -> None:
        try:
            resumed = await self._open(resume_token)
        except BrokerUnavailable:  # e.g. Redis restarting: the client should simply retry
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.transport.close(p.CLOSE_TRY_AGAIN, "briefly unavailable; reconnect")
            return
        event(log, logging.DEBUG, "session open", peer=self.peer, resumed=resumed)
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    await self._read_loop()
                    self._client_gone = True
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._part()

    async def _part(self) -> None:
        try:
            await self._leave_broker()
        except BrokerUnavailable as error:
            # The broker reconciles on reconnect; the client still gets its close frame.
            event(log, logging.WARNING, "departure not recorded", peer=self.peer, error=str(error))
        if not self._client_gone:
            # A client that stopped reading may never take the close frame: bounded, and the
            # transport's own read timeout closes the socket after three silent heartbeats.
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.transport.close(self._close_code, self._close_reason)
        event(log, logging.DEBUG, "session closed", peer=self.peer, code=self._close_code)

    async def _leave_broker(self) -> None:
        broker = self.service.broker
        abusive = self._close_code in (p.CLOSE_POLICY, p.CLOSE_TOO_BIG)
        if abusive:
            gone = await broker.forget(self.peer, self)
            if gone is not None and gone.room is not None:
                await self.service.announce_left(gone.room, self.peer)
        else:
            left = [*self._in_flight, *self._drain_outbox()]
            unsent = [frame for frame, kind in left if kind == RELAYED]
            await broker.detach(self.peer, self, unsent)

    def _drain_outbox(self) -> list[tuple[bytes, int]]:
        left = []
        while True:
            try:
                left.append(self._outbox.receive_nowait())
            except trio.WouldBlock:
                return left

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._outbox.receive()]
            # Whatever piled up while the last write was in progress goes out in one write:
            # under load that means fewer wake-ups and system calls per message.
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._outbox.receive_nowait())
                except trio.WouldBlock:
                    break
            self._in_flight = batch  # if cancelled before the write, these are still unsent
            await self.transport.send([data for data, kind in batch if kind != FLUSH])
            self._in_flight = []
            self._unsent -= len(batch)
            del batch  # an idle connection keeps no copy of what it last sent

    async def _read_loop(self) -> None:
        limit = self.settings.max_message_bytes
        while (frame := await self.transport.receive()) is not None:
            if not self._bucket.take():
                self._refuse(p.RATE_LIMITED, "slow down: too many messages", p.CLOSE_POLICY)
            elif isinstance(frame, bytes):
                self._reply_error(p.BINARY_UNSUPPORTED, "send text frames with JSON", None)
            elif len(frame) > limit or (len(frame) * 4 > limit and len(frame.encode()) > limit):
                self._refuse(p.TOO_LARGE, f"messages are limited to {limit} bytes", p.CLOSE_TOO_BIG)
            else:
                self._strikes = 0
                await self._handle(frame)

    def _refuse(self, code: str, message: str, close_code: int) -> None:
        """Answer a refused message; a client that keeps at it is closed."""
        self._strikes += 1
        self._reply_error(code, message, None)
        if self._strikes >= self.settings.abuse_strikes:
            self.close_soon(close_code, f"too many {code} messages")

    async def _handle(self, text: str) -> None:
        re: str | int | None = None
        try:
            message = p.decode(text)
            re = p.request_id(message)
            kind = p.kind(message)
            await getattr(self, "_on_" + kind)(message, re)
            _HANDLED[kind].inc()
        except p.ProtocolError as error:
            self._reply_error(error.code, error.message, re)
        except BrokerUnavailable:
            self._reply_error(p.UNAVAILABLE, "briefly unavailable; retry in a moment", re)
        except Exception:
            log.exception(
                "internal error handling a message", extra={"fields": {"peer": self.peer}}
            )
            self._reply_error(p.INTERNAL, "internal server error", re)

    # --- replies ------------------------------------------------------------------------------

    def _reply(self, message: dict[str, Any], re: str | int | None) -> None:
        if re is not None:
            message["re"] = re
        self._push(p.encode(message), REPLY)

    def _reply_error(self, code: str, text: str, re: str | int | None) -> None:
        metrics.signaling_errors.labels(code).inc()
        self._reply({"type": "error", "code": code, "message": text}, re)

    def _require_room(self) -> str:
        if self.room is None:
            raise p.ProtocolError(p.NOT_IN_ROOM, "join a room first")
        return self.room

    def _refuse_when_draining(self) -> None:
        if self.service.draining:
            raise p.ProtocolError(p.DRAINING, "this server is shutting down; reconnect")

    # --- one method per client message type ---------------------------------------------------

    async def _on_ping(self, message: dict[str, Any], re: str | int | None) -> None:
        self._reply({"type": "pong"}, re)

    async def _on_create(self, message: dict[str, Any], re: str | int | None) -> None:
        self._refuse_when_draining()
        self._reply({"type": "created", "room": new_code()}, re)

    async def _on_join(self, message: dict[str, Any], re: str | int | None) -> None:
        self._refuse_when_draining()
        room = canonical(message.get("room"))
        if room is None:
            raise p.ProtocolError(p.BAD_ROOM, "a room code is 1 to 64 of A-Z a-z 0-9 _ -")
        member = Member(self.peer, p.display_name(message), p.metadata(message))
        if self.room is not None:
            raise p.ProtocolError(p.ALREADY_IN_ROOM, f"already in room {self.room}; leave first")
        # With a shared broker the room's messages can reach us before join() returns; they
        # are held so that the client always sees `joined` first.
        self._held = []
        joined = p.encode({"type": "peer-joined", "room": room, **member.wire()})
        try:
            present = await self.service.broker.join(
                room, member, self.settings.max_room_peers, announce=joined
            )
        except RoomFull:
            raise p.ProtocolError(p.ROOM_FULL, "this room is full") from None
        else:
            self.room = room
            peers = [other.wire() for other in present]
            self._reply({"type": "joined", "room": room, "peer": self.peer, "peers": peers}, re)
        finally:
            held, self._held = self._held, None
            for frame in held:
                self.offer(frame)

    async def _on_signal(self, message: dict[str, Any], re: str | int | None) -> None:
        room = self._require_room()
        to, data = p.target(message), p.payload(message)
        frame = p.encode({"type": "signal", "from": self.peer, "data": data})
        delivery = await self.service.broker.deliver(room, to, frame)
        if delivery is Delivery.NOT_FOUND:
            raise p.ProtocolError(p.PEER_NOT_FOUND, "no such peer in this room")
        if delivery is Delivery.QUEUE_FULL:
            raise p.ProtocolError(p.QUEUE_FULL, "that peer is away and has too much waiting")

    async def _on_broadcast(self, message: dict[str, Any], re: str | int | None) -> None:
        room = self._require_room()
        frame = p.encode({"type": "broadcast", "from": self.peer, "data": p.payload(message)})
        await self.service.broker.publish(room, frame, exclude=self.peer)

    async def _on_leave(self, message: dict[str, Any], re: str | int | None) -> None:
        room = self._require_room()
        await self.service.broker.leave(room, self.peer)
        self.room = None
        self._reply({"type": "left", "room": room}, re)
        await self.service.announce_left(room, self.peer)
