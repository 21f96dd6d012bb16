"""One signaling connection: reads client messages, answers them and relays to the room.

A Session runs in one task, its connection's: it reads a message, handles it (a reply, or a
frame handed to the broker for others) and reads the next. Everything the client is sent goes
through the session's ``Outbox``, which keeps one order and one bound; the outbox starts a writer
task (in the service's nursery) only while the socket cannot take a frame at once. Liveness is
not the session's job: the service's one heartbeat task pings every connection and drops silent
ones. An idle session holds no task of its own beyond the connection's, and no cancel scope.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import trio

from tallow.broker import BrokerUnavailable, Delivery, Member, RoomFull
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.codec import close_frame
from tallow.signaling.outbox import RELAYED, Outbox
from tallow.signaling.ratelimit import TokenBucket
from tallow.signaling.rooms import canonical, new_code
from tallow.signaling.transport import Need, Transport

if TYPE_CHECKING:
    from tallow.signaling.service import SignalingService

log = logging.getLogger("tallow.signaling")

CLOSE_TIMEOUT = 5.0  # seconds to hand over the close frame before giving up on a client
SILENT_BEATS = 3  # heartbeat intervals a client may stay silent before it is dropped

# A handler answers at once, or returns what it must still wait for (for its session's task),
# or PAUSE: a result comes later (``Session._on_delivery``), and the session reads nothing more
# until then, its task parked as if waiting to read (``Need.READ``: the result goes on from there
# as arriving bytes would).
Waiting = Coroutine[Any, Any, None]


class Pause(enum.Enum):
    """A handler's answer when its result comes later, from the broker's task."""

    PAUSE = "pause"


PAUSE = Pause.PAUSE
Handler = Callable[["Session", dict[str, Any], "str | int | None"], "Waiting | Pause | None"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Session:
    __slots__ = (
        "_awaited_re",
        "_awaiting",
        "_bucket",
        "_carry",
        "_close_code",
        "_close_reason",
        "_closing",
        "_outbox",
        "_strikes",
        "client_ip",
        "peer",
        "room",
        "service",
        "transport",
    )

    def __init__(self, service: SignalingService, transport: Transport, client_ip: str) -> None:
        settings = service.settings
        self.service = service
        self.transport = transport
        self.client_ip = client_ip
        self.peer = ""
        self.room: str | None = None
        self._outbox = Outbox(transport, settings.send_queue, service.spawn_writer)
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self._strikes = 0
        self._carry: Waiting | Need | None = Need.READ  # what _inline left for the task
        self._awaiting = False  # paused (PAUSE) until a delivery result comes
        self._awaited_re: str | int | None = None  # the request id of the signal it is for
        self._closing = False
        self._close_code = p.CLOSE_GOING_AWAY
        self._close_reason = "bye"

    # --- the broker's Inbox -------------------------------------------------------------------

    def offer(self, frame: bytes) -> bool:
        if self._outbox.put(frame, RELAYED):
            return True
        self.close_soon(p.CLOSE_TRY_AGAIN, "too slow reading messages; resume to continue")
        return False

    def supersede(self) -> None:
        self.close_soon(p.CLOSE_SUPERSEDED, "resumed on another connection")

    def refused(self, result: Delivery, re: str | int | None) -> None:
        if self._carry is not None:  # else the session has ended: nobody to answer
            self._answer_delivery(result, re)

    # --- lifecycle ----------------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Close with ``code`` once the session's task is back to reading (callable from any
        task; the first call decides the code). A read in progress is interrupted."""
        if not self._closing:
            self._closing = True
            self._close_code, self._close_reason = code, reason
            self.transport.interrupt()

    def heartbeat(self) -> None:
        """From the service's heartbeat task: drop a client that sent nothing for the last
        SILENT_BEATS heartbeats (a live one answers each ping), else ping it."""
        transport = self.transport
        if transport.silent_beats >= SILENT_BEATS:
            transport.abort()
        else:
            transport.silent_beats += 1
            self._outbox.ping()

    async def _open(self, resume_token: str | None) -> bool:
        """Claim or create the peer, send the welcome, attach to the broker; True if resumed."""
        broker = self.service.broker
        settings = self.service.settings
        claim = await broker.claim(token_hash(resume_token)) if resume_token else None
        self.peer = claim.peer if claim else secrets.token_urlsafe(16)
        self.room = claim.room if claim else None
        token = secrets.token_urlsafe(32)
        welcome: dict[str, Any] = {
            "type": "welcome",
            "v": p.VERSION,
            "peer": self.peer,
            "resume": token,
            "heartbeat": settings.heartbeat_seconds,
            "limits": {
                "message_bytes": settings.max_message_bytes,
                "room_peers": settings.max_room_peers,
            },
        }
        if claim:
            welcome.update(resumed=True, room=claim.room)
            metrics.resumes.inc()
        # The welcome goes first, before anything queued for a resumed peer, which is taken in
        # whole: the outbox's bound counts from the restored backlog on.
        self._outbox.put(p.encode(welcome))
        with self._outbox.restoring():
            await broker.attach(self.peer, token_hash(token), self)
        return claim is not None

    async def run(self, resume_token: str | None) -> None:
        """The connection's one task (its root: nothing else is kept under an idle session):
        open, then read and handle messages until the client goes or the session is closed;
        then part."""
        self.service.opened(self)
        try:
            try:
                resumed = await self._open(resume_token)
            except BrokerUnavailable:  # e.g. Redis restarting: the client should simply retry
                self.close_soon(p.CLOSE_TRY_AGAIN, "briefly unavailable; reconnect")
                self.peer = ""
                return
            event(log, logging.DEBUG, "session open", peer=self.peer, resumed=resumed)
            step = self._step()
            while step is not None:
                if step is Need.READ:
                    # Awaited here, not in a coroutine of the transport's: one frame less per idle
                    # task. Closed or interrupted, it ends too, and None comes next. Meanwhile
                    # the readiness task (or a delivery result) may run _inline: then go on with
                    # what it left.
                    await self.transport.readable(self._inline)
                    step, self._carry = self._carry, Need.READ
                    if step is Need.READ:
                        step = self._step()
                else:
                    await step
                    step = self._step()
        except Exception:  # the connection's root task: a bug ends this session, not the server
            self._crashed()
        finally:
            if self._carry is not Need.READ and self._carry is not None:
                self._carry.close()  # cancelled before it could be awaited
            self._carry = None  # ended: a delivery result that comes now is only answered
            with trio.CancelScope(shield=True):
                await self._part()
            self.service.closed(self)

    def _step(self) -> Waiting | Need | None:
        """Handle every message there is now, with plain calls; then what to wait for:
        ``Need.READ`` (also while paused), what a handler must wait for, or None (the end)."""
        if self._awaiting:
            return Need.READ  # paused: the next message waits for the last one's result
        limit = self.service.settings.max_message_bytes
        while (frame := self.transport.receive_nowait(self._outbox)) is not None:
            if frame is Need.READ:
                return frame
            if not self._bucket.take():
                self._refuse(p.RATE_LIMITED, "slow down: too many messages", p.CLOSE_POLICY)
            elif isinstance(frame, bytes):
                self._reply_error(p.BINARY_UNSUPPORTED, "send text frames with JSON", None)
            elif len(frame) > limit or (len(frame) * 4 > limit and len(frame.encode()) > limit):
                message = f"messages are limited to {limit} bytes"
                self._refuse(p.TOO_LARGE, message, p.CLOSE_TOO_BIG)
            else:
                self._strikes = 0
                if (waiting := self._handle(frame)) is not None:
                    return waiting
        return None

    def _inline(self) -> bool:
        """From the readiness task, while this session's task waits to read: take what came
        (one task switch less per message). False: the task goes on with ``_carry``."""
        try:
            step = self._step()
        except Exception:  # as in run(): this session ends, the readiness task goes on
            self._crashed()
            step = None
        if step is Need.READ:
            return True
        self._carry = step
        return False

    def _crashed(self) -> None:
        log.exception("session failed", extra={"fields": {"peer": self.peer}})

    async def _part(self) -> None:
        if self.peer:
            try:
                await self._leave_broker()
            except BrokerUnavailable as error:
                # The broker reconciles on reconnect; the client still gets its close frame.
                warning = "departure not recorded"
                event(log, logging.WARNING, warning, peer=self.peer, error=str(error))
        farewell = self.transport.farewell or close_frame(self._close_code, self._close_reason)
        # A client that stopped reading may never take the close frame: bounded.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._outbox.finish(farewell)
        self.transport.abort()
        event(log, logging.DEBUG, "session closed", peer=self.peer, code=self._close_code)

    async def _leave_broker(self) -> None:
        broker = self.service.broker
        if self._close_code in (p.CLOSE_POLICY, p.CLOSE_TOO_BIG):  # abuse ends identity
            gone = await broker.forget(self.peer, self)
            if gone is not None and gone.room is not None:
                await self.service.announce_left(gone.room, self.peer)
        else:
            await broker.detach(self.peer, self, self._outbox.unsent())

    def _refuse(self, code: str, message: str, close_code: int) -> None:
        """Answer a refused message; a client that keeps at it is closed."""
        self._strikes += 1
        self._reply_error(code, message, None)
        if self._strikes >= self.service.settings.abuse_strikes:
            self.close_soon(close_code, f"too many {code} messages")

    def _handle(self, text: str) -> Waiting | Need | None:
        """Handle one message with plain calls; what must wait (a join, a leave, a broadcast)
        comes back as an awaitable for the caller to await, a signal whose result comes later
        as PAUSE."""
        re: str | int | None = None
        try:
            message = p.decode(text)
            re = p.request_id(message)
            kind = p.kind(message, HANDLERS)
            waiting = HANDLERS[kind](self, message, re)
        except Exception as error:
            self._failed(error, re)
            return None
        if waiting is PAUSE:
            self._awaiting, self._awaited_re = True, re
            return Need.READ
        if waiting is not None:
            return self._finish(waiting, kind, re)
        _HANDLED[kind] += 1
        return None

    async def _finish(self, waiting: Waiting, kind: str, re: str | int | None) -> None:
        try:
            await waiting
        except Exception as error:
            self._failed(error, re)
        else:
            _HANDLED[kind] += 1

    def _failed(self, error: Exception, re: str | int | None) -> None:
        """Answer a message that failed with ``error``."""
        if isinstance(error, p.ProtocolError):
            self._reply_error(error.code, error.message, re)
        elif isinstance(error, BrokerUnavailable):
            self._reply_error(p.UNAVAILABLE, "briefly unavailable; retry in a moment", re)
        else:
            log.error(
                "internal error handling a message",
                exc_info=error,
                extra={"fields": {"peer": self.peer}},
            )
            self._reply_error(p.INTERNAL, "internal server error", re)

    # --- replies ------------------------------------------------------------------------------

    def _reply(self, message: dict[str, Any], re: str | int | None) -> None:
        if re is not None:
            message["re"] = re
        if not self._outbox.put(p.encode(message)):
            self.close_soon(p.CLOSE_TRY_AGAIN, "too slow reading replies; resume to continue")

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

    # --- one handler per client message type (HANDLERS below) -------------------------------
    # Plain functions: one that must wait returns the awaitable to wait for (None: done).

    def _on_ping(self, message: dict[str, Any], re: str | int | None) -> None:
        self._reply({"type": "pong"}, re)

    def _on_create(self, message: dict[str, Any], re: str | int | None) -> None:
        self._refuse_when_draining()
        self._reply({"type": "created", "room": new_code()}, re)

    def _on_join(self, message: dict[str, Any], re: str | int | None) -> Waiting:
        self._refuse_when_draining()
        room = canonical(message.get("room"))
        if room is None:
            raise p.ProtocolError(p.BAD_ROOM, "a room code is 1 to 64 of A-Z a-z 0-9 _ -")
        member = Member(self.peer, p.display_name(message), p.metadata(message))
        if self.room is not None:
            raise p.ProtocolError(p.ALREADY_IN_ROOM, f"already in room {self.room}; leave first")
        return self._join(room, member, re)

    async def _join(self, room: str, member: Member, re: str | int | None) -> None:
        # With a shared broker the room's messages can reach us before join() returns; they
        # are held so that the client always sees `joined` first.
        self._outbox.hold()
        joined_reply = None
        announce = p.encode({"type": "peer-joined", "room": room, **member.wire()})
        try:
            capacity = self.service.settings.max_room_peers
            present = await self.service.broker.join(room, member, capacity, announce=announce)
        except RoomFull:
            raise p.ProtocolError(p.ROOM_FULL, "this room is full") from None
        else:
            self.room = room
            peers = [other.wire() for other in present]
            reply: dict[str, Any] = {"type": "joined", "room": room, "peer": self.peer}
            reply["peers"] = peers
            if re is not None:
                reply["re"] = re
            joined_reply = p.encode(reply)
        finally:
            self._outbox.release(joined_reply)

    def _on_signal(self, message: dict[str, Any], re: str | int | None) -> Pause | None:
        room = self._require_room()
        to, data = p.target(message), p.payload(message)
        frame = p.relayed("signal", self.peer, data)
        delivery = self.service.broker.deliver(room, to, frame, self._on_delivery, (self.peer, re))
        if delivery is None:
            return PAUSE
        if delivery is not Delivery.DELIVERED:
            _delivered(delivery)
        return None

    def _on_delivery(self, delivery: Delivery | Exception) -> None:
        """The broker's result for the signal the session paused on (from the broker's task):
        answer it, then go on with what the client sent meanwhile, as the readiness task would."""
        self._awaiting = False
        if self._carry is None:  # the session has ended: nobody to answer
            return
        if self._answer_delivery(delivery, self._awaited_re):
            _HANDLED["signal"] += 1
        self.transport.proceed()

    def _answer_delivery(self, delivery: Delivery | Exception, re: str | int | None) -> bool:
        """Answer a signal the broker refused (True if it did not)."""
        try:
            if isinstance(delivery, Exception):
                raise delivery
            _delivered(delivery)
        except Exception as error:
            self._failed(error, re)
            return False
        return True

    def _on_broadcast(self, message: dict[str, Any], re: str | int | None) -> Waiting:
        room = self._require_room()
        frame = p.relayed("broadcast", self.peer, p.payload(message))
        return self.service.broker.publish(room, frame, exclude=self.peer)

    def _on_leave(self, message: dict[str, Any], re: str | int | None) -> Waiting:
        return self._leave(self._require_room(), re)

    async def _leave(self, room: str, re: str | int | None) -> None:
        await self.service.broker.leave(room, self.peer)
        self.room = None
        self._reply({"type": "left", "room": room}, re)
        await self.service.announce_left(room, self.peer)


def _delivered(delivery: Delivery) -> None:
    """Refuse a signal the broker could not hand over or keep."""
    if delivery is Delivery.NOT_FOUND:
        raise p.ProtocolError(p.PEER_NOT_FOUND, "no such peer in this room")
    if delivery is Delivery.QUEUE_FULL:
        raise p.ProtocolError(p.QUEUE_FULL, "that peer is away and has too much waiting")


# The dispatch table: every client message type and the handler it goes to. It is the
# protocol's one list of client types: protocol.kind refuses any type not in it, and each is
# counted in tallow_messages_handled from 0.
HANDLERS: dict[str, Handler] = {
    "create": Session._on_create,
    "join": Session._on_join,
    "signal": Session._on_signal,
    "broadcast": Session._on_broadcast,
    "leave": Session._on_leave,
    "ping": Session._on_ping,
}

_HANDLED = metrics.messages_handled.counting(HANDLERS)
