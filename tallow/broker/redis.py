"""Redis fan-out: any number of replicas behave as one signaling service.

Rooms, peers, resume tokens and queues live in Redis (see ``redis_scripts`` for the keys); every
change is one Lua script, so capacity checks and single-use tokens are atomic across replicas.
Each replica subscribes to one channel of its own. A frame for a peer attached elsewhere is
published to that replica's channel by the same script that checked the room, so one sender's
frames keep their order; frames for a peer that is away wait in its queue. When a peer leaves a
replica (closed, cut off as a slow reader, resumed elsewhere) that replica *releases* it: frames
still on their way to it go back through Redis ahead of anything sent meanwhile.

**Local fast path.** A frame between two peers attached to this replica is handed over in
process, without Redis, once the receiver is *settled* here: its attach is done, no hand-over
from its previous replica is still releasing frames to it (``u`` ends that), nothing of it waits
in its Redis queue, and every frame a session of this replica sent it through Redis has come
back through the channel (the numbered ``D`` *echoes*). Until then frames take the scripts, so
a sender's in-process frame never overtakes its own earlier frame still inside Redis.

Script calls go through a ``ScriptBatch``: those issued in the same scheduler tick reach Redis
as one pipeline (``redis_batch``). The two hot paths, that pipeline and the subscription, run on
connections of their own with raw RESP (``redis_link``, ``redis_pubsub``); coredis finds the
node they connect to and carries everything else. Script replies and the channel are read from
different connections, so either can be read first: frames the channel brings for a peer whose
attach (or resync) reply, with the older frames of its queue, is still unread wait behind those,
and a ``u`` read first is not undone by the attach's older news of a hold.

Replicas heartbeat into a sorted set; one silent for ``NODE_TIMEOUT`` is dead and any replica's
``expired()`` hands its peers the resume grace (counted from its last heartbeat) and then removes
them. What a dead replica held in memory for its peers is lost: their rooms hear of it
(``Interrupted``), when a peer resumes elsewhere or when the death is noticed, whichever is first.
A Redis outage never stops the process: operations raise ``BrokerUnavailable`` (the sender
gets an error), the subscriber and heartbeat retry on their own, and once Redis answers again the
replica re-registers the peers it holds (Redis may have restarted empty; if it kept its data,
this replica was taken for dead, and its peers are announced to their rooms again) and flushes
frames that waited while it was unsubscribed. The same code runs on a Redis Cluster, with every
key on one hash-tagged slot and sharded pub/sub. docs/scaling.md has the whole story.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

import anyio
import attrs
import coredis
import orjson
import trio
from coredis import exceptions as redis_errors
from outcome import Outcome

from tallow.broker import redis_scripts as lua
from tallow.broker.base import (
    BrokerUnavailable,
    Claim,
    Delivery,
    Expired,
    Inbox,
    Interrupted,
    Later,
    Member,
    RoomFull,
)
from tallow.broker.redis_batch import Done, Script, ScriptBatch
from tallow.broker.redis_connect import Client, node_for, open_client
from tallow.broker.redis_link import Endpoint
from tallow.broker.redis_pubsub import subscribe
from tallow.config import Settings
from tallow.observability.logs import event

log = logging.getLogger("tallow.broker")
# coredis reports every script it must load again (after a Redis restart) at INFO: routine here.
logging.getLogger("coredis").setLevel(logging.WARNING)

OP_TIMEOUT = 2.0  # seconds; a Redis round trip slower than this counts as an outage
HEARTBEAT_INTERVAL = 1.0  # seconds between a replica's heartbeats
NODE_TIMEOUT = 5.0  # seconds without a heartbeat after which a replica is taken for dead
RESUBSCRIBE_DELAY = 0.5  # seconds between attempts to subscribe again after losing Redis
REAP_LIMIT = 500  # expired peers handled per expired() call
RELEASE_TIMEOUT = 3.0  # seconds a hand-over waits for its marker before it goes ahead anyway
HOLD_MS = 10_000  # a hand-over whose replica never releases (it died) lapses after this
KEEP_EXTRA_MS = 60_000  # away peers' keys outlive their grace by this much, then expire

# What a Redis client raises when the server is gone, restarting, failing over or refusing us.
UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.ReadOnlyError,
    redis_errors.SentinelError,
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
    redis_errors.BusyLoadingError,
    # A Redis Cluster failing over, resharding or missing a slot for the moment:
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.AskError,  # and MovedError: a slot moved under a pipeline
    redis_errors.ClusterError,
    redis_errors.ClusterRoutingError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    trio.ClosedResourceError,  # the broker's own connections (redis_link): TLS refused, ...
    trio.BrokenResourceError,
    trio.TooSlowError,
)

_DELIVERY = {
    b"delivered": Delivery.DELIVERED,
    b"queued": Delivery.QUEUED,
    b"full": Delivery.QUEUE_FULL,
    b"gone": Delivery.NOT_FOUND,
}
_HERE = b"here:"  # a script result: published to this very replica's channel, for that conn

_SCRIPTS = {
    "attach": lua.ATTACH,
    "claim": lua.CLAIM,
    "handoff": lua.HANDOFF,
    "release": lua.RELEASE,
    "forget": lua.FORGET,
    "join": lua.JOIN,
    "leave": lua.LEAVE,
    "deliver": lua.DELIVER,
    "notice": lua.NOTICE,
    "publish": lua.PUBLISH,
    "reroute": lua.REROUTE,
    "flush": lua.FLUSH,
    "heartbeat": lua.HEARTBEAT,
    "goodbye": lua.GOODBYE,
    "resync": lua.RESYNC,
    "abandon": lua.ABANDON,
    "reap": lua.REAP,
    "probe": lua.PROBE,
}

# The scripts whose calls next to each other in a pipeline run as one (every signal that
# crosses replicas is a DELIVER: Redis' fixed cost per script run comes once per pipeline).
_MERGING = {"deliver"}


@attrs.define(eq=False)
class _Local:
    """A peer attached to this replica: what Redis would need again after losing its data."""

    inbox: Inbox
    conn: str  # this attachment's id; Redis records it so stale connections change nothing
    resume_hash: str
    room: str = ""
    member: bytes = b""  # the member record (JSON) in ``room``
    announce: bytes = b""  # its join announcement, sent again if the others heard it leave
    # What keeps the local fast path off (module docstring): all must clear.
    attached: bool = False  # the attach script has run (and no resync is running)
    # Its previous replica still releases frames to it (until ``u``); None until the attach
    # script's reply says, which may come after the ``u`` (the two use different connections).
    held: bool | None = None
    blocked: bool = False  # frames may wait in its Redis queue (until a flush or resync)
    echoes: set[int] = attrs.Factory(set)  # numbers of D echoes sent or seen, not yet both
    # Frames that came through the channel before the attach (or resync) script's reply, which
    # carries older ones (its queue): they go after those.
    early: list[bytes] = attrs.Factory(list)

    @property
    def settled(self) -> bool:
        return self.attached and not (self.held or self.blocked or self.echoes)

    def echo(self, number: int) -> None:
        """One half of an echo: the script's reply or the D message, whichever comes first."""
        self.echoes ^= {number}


@attrs.define(eq=False)
class _Release:
    """This replica is letting go of a peer: frames that reached it meanwhile, oldest first.

    It ends (frames go back through Redis, to wherever the peer is by then) once the connection
    has detached and the marker published with the hand-over has come through this replica's
    channel, which proves no older frame for the peer is still on its way here.
    """

    frames: list[bytes]
    detached: bool = False
    marker_seen: bool = False
    finishing: bool = False
    done: trio.Event = attrs.Factory(trio.Event)  # its frames are back in Redis


class RedisBroker:
    name = "redis"
    shared = True

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self._url = settings.redis_url
        # In a Redis Cluster the prefix is a hash tag: all of Tallow's keys share one slot
        # (docs/scaling.md says why); elsewhere keys keep the plain layout older replicas use.
        cluster = self._url.cluster
        self._prefix = f"{{{settings.redis_prefix}}}" if cluster else settings.redis_prefix
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        # A restarted replica reusing a host name must not inherit its predecessor's peers.
        self._node = f"{settings.node}:{secrets.token_hex(4)}"
        self._bound = settings.resume_queue
        context: dict[str, str | int] = {
            "prefix": self._prefix,
            "node": self._node,
            "grace_ms": int(settings.resume_seconds * 1000),
            "bound": self._bound,
            "keep_extra_ms": KEEP_EXTRA_MS,
            "hold_ms": HOLD_MS,
            "publish": self._publish,
        }
        self._context = [context[name] for name in lua.CONTEXT]
        self._client: Client | None = None
        self._batch: ScriptBatch | None = None
        self._scripts: dict[str, Script] = {}
        self._local: dict[str, _Local] = {}
        self._here: dict[str, set[str]] = {}  # room -> peers attached here that are in it
        self._echo_numbers = itertools.count()
        self._healthy_since: float | None = None  # continuous heartbeats since (trio clock)
        self._seen_outage = False
        self._resync_needed = True
        self._epoch: bytes | None = None  # of Redis' data, as the last heartbeat saw it
        self._taken_for_dead = False  # the next resync announces this replica's peers again
        self._releases: dict[str, _Release] = {}
        self._reconciling = trio.Lock()
        self._interrupted: list[Interrupted] = []  # found by claims, told by the next expired()

    # --- background work ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_client(self._url, op_timeout=OP_TIMEOUT) as client:
            self._client = client
            route = self._key("epoch")  # every script declares this key: in a cluster, its slot

            async def locate() -> Endpoint:
                return await node_for(self._url, client, route, OP_TIMEOUT)

            batch = self._batch = ScriptBatch(locate, OP_TIMEOUT, [route], self._context)
            self._scripts = {
                name: batch.register(lua.full(body), merges=name in _MERGING)
                for name, body in _SCRIPTS.items()
            }
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(batch.run)
                    subscribed = trio.Event()
                    nursery.start_soon(self._subscribe_forever, subscribed)
                    nursery.start_soon(self._heartbeat_forever)
                    # Serve at once even if Redis is down; when it is up, be subscribed first.
                    with trio.move_on_after(OP_TIMEOUT):
                        await subscribed.wait()
                    task_status.started()
            finally:
                # The batch's task has ended: the goodbye goes alone.
                with trio.CancelScope(shield=True), trio.move_on_after(2 * OP_TIMEOUT):
                    await self._goodbye()
                self._client = None  # no script call starts after this
                with trio.CancelScope(shield=True):
                    await batch.aclose()

    async def _subscribe_forever(self, subscribed: trio.Event) -> None:
        client = self._connected()
        channel = self._key("ch", self._node)
        sharded = isinstance(client, coredis.RedisCluster)
        while True:
            try:
                with trio.fail_after(OP_TIMEOUT):
                    node = await node_for(self._url, client, channel, OP_TIMEOUT)
                async with subscribe(node, channel, sharded=sharded, within=OP_TIMEOUT) as sub:
                    await self._check_subscription()
                    subscribed.set()
                    event(log, logging.INFO, "redis subscription ready", channel=channel)
                    # Frames published while we were not subscribed wait in queues, and
                    # Redis may have lost state (restart, failover): reconcile now. Echoes
                    # published meanwhile are lost: the resync settles each peer afresh.
                    for local in self._local.values():
                        local.blocked, local.echoes = True, set()
                    self._resync_needed = True
                    with contextlib.suppress(BrokerUnavailable):
                        await self._reconcile()
                    while True:
                        for data in await sub.receive():
                            if (waiting := self._on_message(data)) is not None:
                                await waiting
            except Exception as error:
                self._trouble("subscription lost", error)
            await trio.sleep(RESUBSCRIBE_DELAY)

    async def _check_subscription(self) -> None:
        """In a cluster, fail unless this replica's subscription sits on its slot's primary.

        A slot map not yet reloaded after a failover can place the subscription on the old
        primary, now a replica: it still hears what the new primary publishes, but Redis counts
        only the primary's own subscribers, so the scripts would also queue every such frame
        for a flush later (twice delivered). Those frames, unread so far, go with the failed
        subscription; a probe the primary counts (a script: a replica would count its own)
        proves the right node before anything is read.
        """
        cluster = isinstance(self._client, coredis.RedisCluster)
        if cluster and await self._script("probe") == 0:
            raise BrokerUnavailable("subscribed to a replica of the slot's primary")

    async def _heartbeat_forever(self) -> None:
        while True:
            try:
                known, epoch = await self._script("heartbeat", secrets.token_hex(8))
                if self._healthy_since is None:
                    self._healthy_since = trio.current_time()
                    event(log, logging.INFO, "redis reachable", node=self._node)
                if not known:
                    self._resync_needed = True
                    self._taken_for_dead = epoch == self._epoch
                    if self._taken_for_dead:
                        event(log, logging.WARNING, "taken for dead; announcing peers again")
                self._epoch = epoch
                await self._reconcile()
            except BrokerUnavailable:
                pass  # already logged by _trouble; try again next beat
            await trio.sleep(HEARTBEAT_INTERVAL)

    async def _goodbye(self) -> None:
        # If Redis is away, other replicas take this one for dead and reap its peers instead.
        with contextlib.suppress(BrokerUnavailable):
            await self._script("goodbye")

    # --- the Broker protocol --------------------------------------------------------------

    async def ping(self) -> float:
        client = self._connected()
        start = trio.current_time()
        # A round trip to the node that holds Tallow's keys (in a cluster, PING asks them all).
        await self._guard(client.exists([self._key("epoch")]))
        return trio.current_time() - start

    async def attach(self, peer: str, resume_hash: str, inbox: Inbox) -> None:
        conn = secrets.token_hex(8)
        local = self._local[peer] = _Local(inbox, conn, resume_hash)
        try:
            room, member, held, *queued = await self._script("attach", peer, conn, resume_hash)
        except BrokerUnavailable:
            if self._local.get(peer) is local:
                del self._local[peer]
            raise
        if self._local.get(peer) is local:
            self._set_room(peer, local, room.decode(), member)
        if local.held is None:
            local.held = bool(held)
        self._attached(peer, local, queued)

    async def claim(self, resume_hash: str) -> Claim | None:
        found = await self._script("claim", resume_hash)
        if not found:
            return None
        peer, room, node, conn = (item.decode() for item in found[:4])
        if found[4] and room:  # its old replica is dead, with what it held for the peer
            self._interrupted.append(Interrupted(peer, room))
        old = self._local.get(peer)
        if node == self._node and old is not None and old.conn == conn:
            # The client came back before its old connection here was noticed as dead.
            self._let_go(peer, old)
        return Claim(peer, room or None)

    async def detach(self, peer: str, inbox: Inbox, unsent: Sequence[bytes] = ()) -> None:
        conn = self._unregister(peer, inbox)
        release = self._releases.get(peer)
        if release is None and not conn:
            # Never the peer's current connection here: nothing else was on its way to it.
            if unsent:
                done = _Release(list(unsent), detached=True, marker_seen=True)
                await self._finish_release(peer, done)
            return
        release = self._releases.setdefault(peer, _Release([]))
        release.frames[:0] = unsent  # never written, so older than anything that came after
        release.detached = True
        if conn:  # else a resume superseded it, and the marker that came with that ends it
            try:
                outcome = await self._script("handoff", peer, conn)
            except BrokerUnavailable:
                # Redis still lists the peer here; the reconcile after the outage makes it away.
                self._releases.pop(peer, None)
                event(log, logging.WARNING, "detach lost in outage", peer=peer, frames=len(unsent))
                return
            if outcome == b"gone":
                self._releases.pop(peer, None)
                return
            release.marker_seen |= outcome == b"other"
        await self._finish_release(peer, release)
        # Return only once what was on its way is queued, so a resume right after the close
        # finds all of it; a marker lost with the subscription must not hold the peer forever.
        with trio.move_on_after(RELEASE_TIMEOUT):
            await release.done.wait()
        await self._finish_release(peer, release, overdue=True)

    async def forget(self, peer: str, inbox: Inbox) -> Expired | None:
        conn = self._unregister(peer, inbox)
        self._releases.pop(peer, None)
        if not conn:
            return None
        try:
            room = await self._script("forget", peer, conn)
        except BrokerUnavailable:
            return None  # made away by the reconcile, then expired and announced by the reaper
        return None if room is None else Expired(peer, room.decode() or None)

    async def join(self, room: str, member: Member, capacity: int, announce: bytes) -> list[Member]:
        record = orjson.dumps(member.wire())
        number = next(self._echo_numbers)
        reply = await self._script("join", room, member.peer, record, capacity, announce, number)
        if reply is None:
            raise RoomFull(room)
        count = reply[0]
        present, results = reply[1 : count + 1], reply[count + 1 :]
        self._note_results(number, results)
        local = self._local.get(member.peer)
        if local is not None:
            self._set_room(member.peer, local, room, record)
            local.announce = announce
        return [_member(raw) for raw in present]

    async def leave(self, room: str, peer: str) -> None:
        await self._script("leave", room, peer)
        local = self._local.get(peer)
        if local is not None and local.room == room:
            self._set_room(peer, local, "", b"")

    def deliver(self, room: str, to: str, frame: bytes, later: Later) -> Delivery | None:
        """At once on the local fast path (module docstring); else the script, whose reply the
        batch's task hands to ``_delivered``."""
        local = self._local.get(to)
        if local is not None and local.room == room and local.settled:
            self._hand_over_here(to, local, frame)
            return Delivery.DELIVERED
        number = next(self._echo_numbers)
        done = partial(self._delivered, number, to, later)
        self._submit("deliver", (room, to, frame, number), done)
        return None

    def _delivered(self, number: int, to: str, later: Later, reply: Outcome[Any]) -> None:
        try:
            result = self._unwrap(reply)
        except Exception as error:  # an outage, or the script failed (a bug): the session says
            later(error)
            return
        if result != b"delivered":  # published elsewhere: nothing to note here
            self._note_results(number, [to.encode(), result])
        later(Delivery.DELIVERED if result.startswith(_HERE) else _DELIVERY[result])

    async def publish(self, room: str, frame: bytes, exclude: str | None = None) -> None:
        handed = [exclude] if exclude else []
        for peer in self._here.get(room, ()):
            local = self._local[peer]
            if peer != exclude and local.settled:
                self._hand_over_here(peer, local, frame)
                handed.append(peer)
        # Membership lives in Redis: the script finds the members elsewhere (or not settled).
        number = next(self._echo_numbers)
        results = await self._script("publish", room, frame, number, *handed)
        self._note_results(number, results)

    async def expired(self) -> list[Expired | Interrupted]:
        # Right after an outage every replica's heartbeat looks old: judge others only once this
        # one has been beating for a whole NODE_TIMEOUT, so they had time to beat again too.
        settled = self._healthy_since is not None and (
            not self._seen_outage or trio.current_time() - self._healthy_since >= NODE_TIMEOUT
        )
        gone, cut = await self._script("reap", int(NODE_TIMEOUT * 1000), int(settled), REAP_LIMIT)
        told, self._interrupted = self._interrupted, []
        return [
            *(Interrupted(peer.decode(), room.decode()) for peer, room in _pairs(cut)),
            *told,
            *(Expired(peer.decode(), room.decode() or None) for peer, room in _pairs(gone)),
        ]

    def counts(self) -> tuple[int, int]:
        """This replica's own view: peers attached here and the rooms they are in."""
        return len(self._here), len(self._local)

    # --- the local fast path --------------------------------------------------------------

    def _set_room(self, peer: str, local: _Local, room: str, member: bytes) -> None:
        if local.room:
            here = self._here.get(local.room, set())
            here.discard(peer)
            if not here:
                self._here.pop(local.room, None)
        local.room, local.member = room, member
        if room:
            self._here.setdefault(room, set()).add(peer)

    def _note_results(self, number: int, results: list[bytes]) -> None:
        """Script results (peer, result, ...) that concern peers attached here."""
        for raw_peer, result in zip(results[::2], results[1::2], strict=True):
            local = self._local.get(raw_peer.decode())
            if local is None:
                continue
            if result.startswith(_HERE):
                if local.conn == result[len(_HERE) :].decode():
                    local.echo(number)
            elif result == b"queued" and not local.held and not local.blocked:
                # It may wait in the Redis queue: a flush notice through this replica's own
                # channel (ordered with what arrives there) takes it, then the fast path may
                # resume. A notice lost in an outage is made good by the resync after it.
                local.blocked = True
                with contextlib.suppress(BrokerUnavailable):
                    self._submit("notice", (raw_peer,), _ignore)

    def _hand_over_here(self, peer: str, local: _Local, frame: bytes) -> None:
        """Offer ``frame`` to a peer attached here, or to its release if it is being let go."""
        release = self._releases.get(peer)
        if release is not None:
            release.frames.append(frame)
        elif not local.attached:  # older frames come with its attach (or resync) reply
            local.early.append(frame)
        elif not local.inbox.offer(frame):
            self._releases[peer] = _Release([frame])  # cut off as a slow reader

    # --- frames arriving on this replica's channel ----------------------------------------

    def _on_message(self, data: bytes) -> Awaitable[None] | None:
        """One message of the channel, handled with plain calls; what must wait for Redis
        first (a flush, a release) comes back to be awaited before the next message."""
        header, _, frame = data.partition(b"\n")
        if header == b"j":  # several frames: a header line and a frame line each
            lines = frame.split(b"\n")
            for line, joined in zip(lines[::2], lines[1::2], strict=True):
                kind, *args = line.decode().split(" ")
                self._on_frame(kind, args, joined)
            return None
        kind, *args = header.decode().split(" ")
        try:
            if kind in ("d", "D"):
                self._on_frame(kind, args, frame)
            elif kind == "u":  # its hold ended: what was held for the peer is all here now
                local = self._local.get(args[0])
                if local is not None and local.conn == args[1]:
                    local.held = False
            elif kind == "f":
                return self._logged(kind, self._flush(args[0]))
            elif kind == "s":  # a resume took the peer: close its connection here
                self._supersede(*args)
                return self._logged(kind, self._marker(args[0]))
            elif kind == "m":  # the hand-over marker: nothing older for the peer is on its way
                return self._logged(kind, self._marker(args[0]))
        except BrokerUnavailable as error:
            _not_handed_over(kind, error)
        return None

    def _on_frame(self, kind: str, args: list[str], frame: bytes) -> None:
        """A ``d`` or ``D`` message: ``frame`` for the peers its header names."""
        try:
            if kind == "d":
                for peer in args:
                    self._hand_over(peer, frame)
            else:  # D: an echo, sent by a session here through Redis
                number = int(args[0])
                for target in args[1:]:
                    peer, _, conn = target.partition("/")
                    self._hand_over(peer, frame)
                    local = self._local.get(peer)
                    if local is not None and local.conn == conn:
                        local.echo(number)
        except BrokerUnavailable as error:
            _not_handed_over(kind, error)

    async def _logged(self, kind: str, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except BrokerUnavailable as error:
            _not_handed_over(kind, error)

    def _hand_over(self, peer: str, frame: bytes) -> None:
        local = self._local.get(peer)
        if local is not None:
            self._hand_over_here(peer, local, frame)
        elif (release := self._releases.get(peer)) is not None:
            release.frames.append(frame)
        else:
            # The peer moved on (resumed elsewhere, gone): Redis knows where it is now. The
            # batch keeps this call's place among the others: nothing here waits for it.
            self._submit("reroute", (peer, frame), self._rerouted)

    def _rerouted(self, reply: Outcome[Any]) -> None:
        try:
            self._unwrap(reply)
        except BrokerUnavailable as error:
            _not_handed_over("reroute", error)
        except Exception:  # the script failed: a bug, not a reason to stop the batch's task
            log.exception("reroute failed")

    def _attached(self, peer: str, local: _Local, queued: list[bytes]) -> None:
        """The attach (or resync) reply is read: the queue it took, then what the channel
        brought meanwhile (``early``), go to the peer."""
        local.attached = True
        early, local.early = local.early, []
        self._hand_over_all(peer, local, [*queued, *early])

    def _hand_over_all(self, peer: str, local: _Local, frames: list[bytes]) -> None:
        for frame in frames:  # once one goes to a release (or waits), the rest follow it
            self._hand_over_here(peer, local, frame)

    async def _flush(self, peer: str) -> None:
        local = self._local.get(peer)
        if local is not None and peer not in self._releases:
            self._hand_over_all(peer, local, await self._script("flush", peer, local.conn))
            local.blocked = False

    def _supersede(self, peer: str, conn: str) -> None:
        local = self._local.get(peer)
        if local is not None and local.conn == conn:
            self._let_go(peer, local)

    def _let_go(self, peer: str, local: _Local) -> None:
        """Close ``local``'s connection; frames still arriving for the peer join its release."""
        self._forget_local(peer, local)
        self._releases.setdefault(peer, _Release([]))
        local.inbox.supersede()

    async def _marker(self, peer: str) -> None:
        release = self._releases.get(peer)
        if release is not None:
            release.marker_seen = True
            await self._finish_release(peer, release)

    async def _finish_release(self, peer: str, release: _Release, *, overdue: bool = False) -> None:
        if release.finishing or not (release.detached and (release.marker_seen or overdue)):
            return
        release.finishing = True
        if self._releases.get(peer) is release:
            del self._releases[peer]
        # Room for the frames that were on their way on top of a full resume queue.
        bound = self._bound + len(release.frames)
        try:
            await self._script("release", peer, bound, *release.frames)
        except BrokerUnavailable:
            event(
                log, logging.WARNING, "frames lost in outage", peer=peer, frames=len(release.frames)
            )
        finally:
            release.done.set()

    def _unregister(self, peer: str, inbox: Inbox) -> str:
        """Forget ``inbox``'s attachment of ``peer`` here; its id, or '' if it was not current."""
        local = self._local.get(peer)
        if local is None or local.inbox is not inbox:
            return ""
        self._forget_local(peer, local)
        return local.conn

    def _forget_local(self, peer: str, local: _Local) -> None:
        self._set_room(peer, local, "", b"")
        del self._local[peer]

    # --- after an outage ------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Make Redis agree with the peers attached here, and flush what waited for them."""
        async with self._reconciling:
            if self._resync_needed:
                self._resync_needed = False
                await self._resync()

    async def _resync(self) -> None:
        announce = self._taken_for_dead  # cleared once every peer is back
        for peer, local in list(self._local.items()):
            if peer in self._releases or self._local.get(peer) is not local:
                continue
            # As for an attach: what the channel brings before the reply (this runs beside the
            # subscriber when the heartbeat finds Redis changed) waits behind the queue it carries.
            local.attached = False
            reply: list[bytes] = [b"failed"]
            try:
                reply = await self._script(
                    "resync",
                    peer,
                    local.conn,
                    local.resume_hash,
                    local.room,
                    local.member,
                    local.announce if announce else b"",
                )
            finally:
                # Failed (an outage): the queue stays in Redis for the next resync, and what came
                # meanwhile goes now; the outage has broken the order already.
                self._attached(peer, local, reply[1:])
            status = reply[0]
            if status == b"lost":  # resumed on another connection meanwhile
                self._supersede(peer, local.conn)
            elif self._local.get(peer) is local:
                local.blocked = False
        client = self._connected()
        listed = await self._guard(client.smembers(self._key("node", self._node)))
        for raw in listed:
            peer = raw.decode()
            if peer not in self._local:
                await self._script("abandon", peer)
        self._taken_for_dead &= not announce
        event(log, logging.INFO, "redis state reconciled", peers=len(self._local))

    # --- plumbing -------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _connected(self) -> Client:
        if self._client is None:
            raise BrokerUnavailable("not connected to Redis")
        return self._client

    def _submit(self, name: str, args: Sequence[str | bytes | int], done: Done) -> None:
        """Queue a script call whose reply goes to ``done`` (``ScriptBatch.submit``)."""
        self._connected()
        assert self._batch is not None
        self._batch.submit(self._scripts[name], args, done)

    def _unwrap(self, reply: Outcome[Any]) -> Any:
        """A submitted call's reply, as ``_script`` would return or raise it."""
        try:
            return reply.unwrap()
        except (*UNAVAILABLE, BrokerUnavailable) as error:
            raise self._unavailable(error) from error

    async def _script(self, name: str, *args: str | bytes | int) -> Any:
        self._connected()
        assert self._batch is not None
        try:
            # Bounded and not cancellable by the batch itself: no scope of our own (it would
            # cost more than the call; docs/performance.md).
            return await self._batch.call(self._scripts[name], args)
        except (*UNAVAILABLE, BrokerUnavailable) as error:
            raise self._unavailable(error) from error

    async def _guard(self, request: Any) -> Any:
        """Await one Redis request; trouble of any kind becomes BrokerUnavailable.

        Shielded (and bounded): a caller cancelled meanwhile must not leave half an operation
        behind, such as a join whose announcement never went out.
        """
        try:
            with trio.CancelScope(shield=True), trio.fail_after(OP_TIMEOUT):
                return await request
        except UNAVAILABLE as error:
            if isinstance(error, redis_errors.ReadOnlyError) and self._client is not None:
                # A primary demoted by a failover: reconnect, asking Sentinel where to.
                self._client.connection_pool.disconnect()
            raise self._unavailable(error) from error

    def _unavailable(self, error: BaseException) -> BrokerUnavailable:
        self._trouble("redis unavailable", error)
        return BrokerUnavailable(_describe(error))

    def _trouble(self, what: str, error: BaseException) -> None:
        if isinstance(self._client, coredis.RedisCluster):
            # A primary failed or moved. coredis reloads its slot map after errors its own
            # retries report; ours fail fast instead, so report them.
            lost = redis_errors.ConnectionError(_describe(error))
            self._client.connection_pool.cluster_layout.report_errors(None, lost)
        if self._healthy_since is not None:
            event(log, logging.WARNING, what, error=_describe(error))
        self._healthy_since = None
        self._seen_outage = True
        self._resync_needed = True


def _not_handed_over(kind: str, error: BrokerUnavailable) -> None:
    event(log, logging.WARNING, "frame not handed over", kind=kind, error=str(error))


def _ignore(_: Outcome[Any]) -> None:
    """A script call nobody waits for (its failure is an outage, handled by the reconcile)."""


def _pairs(flat: list[bytes]) -> zip[tuple[bytes, bytes]]:
    return zip(flat[::2], flat[1::2], strict=True)


def _member(raw: bytes) -> Member:
    fields = orjson.loads(raw)
    return Member(fields["peer"], fields["name"], fields["meta"])


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
