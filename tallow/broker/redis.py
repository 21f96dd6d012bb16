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

**Routes.** A script that published a frame to another replica tells the sender where the peer
is (``at:``), and the sender's next frames for it go there with a bare PUBLISH (``r``), which
costs Redis a tenth of the script, until the peer leaves that replica. Then Redis tells every
route holder (``x``, listed in ``P:routes:<peer>``), each answers behind the frames it sent on the
route (``y``), and the old replica's release waits for those answers as for its marker: routed
frames are in flight like any other and keep their place. A routed frame that finds its peer
gone from the replica or its room anyway (a route learnt just as the peer left) goes on through
Redis from there, and a refusal (gone, full) goes back to the sender (``e``). The sender's
session waits for its routed frame's PUBLISH as it would for the script: if nobody heard it
(that replica is not subscribed), the frame takes the script (most likely to the peer's queue)
before the same sender's next frame can go anywhere, so the next cannot overtake it.

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
from collections.abc import Awaitable, Callable, Sequence
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
    Origin,
    RoomFull,
)
from tallow.broker.redis_batch import Command, Done, ScriptBatch
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
_AT = b"at:"  # a script result: published to that replica, which takes routed frames
_REFUSALS = frozenset({b"full", b"gone"})  # results a routed frame's sender hears of

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
    has detached, the marker published with the hand-over has come through this replica's
    channel, which proves no older frame for the peer is still on its way here, and so have the
    answers (y) of the replicas that held a route to it (their routed frames come before them).
    """

    frames: list[bytes]
    room: str  # the peer's room: routed frames for another room are refused
    detached: bool = False
    marker_seen: bool = False
    holders: int = 0  # route holders told (from the marker), whose answers it waits for
    answers: int = 0
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
        # A restarted replica reusing a host name must not inherit its predecessor's peers; the
        # name travels in space-separated channel messages (r, x).
        name = "".join(c if c.isalnum() or c in ".-_" else "_" for c in settings.node)
        self._node = f"{name}:{secrets.token_hex(4)}"
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
        self._commands: dict[str, Command] = {}  # the scripts by name, and two plain PUBLISHes
        self._local: dict[str, _Local] = {}
        self._routes: dict[str, str] = {}  # peer -> the replica its frames go to with a PUBLISH
        # Counts x messages (and outages): a route learnt from a script reply is kept only if
        # none came since the call was made (the two are read from different connections).
        self._unroutes = 0
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
            self._commands = {
                name: batch.register(lua.full(body), merges=name in _MERGING)
                for name, body in _SCRIPTS.items()
            }
            # Routed frames next to each other for one replica go as one PUBLISH (one line each).
            self._commands["route"] = batch.command(self._publish, joins=True)
            self._commands["message"] = batch.command(self._publish)
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
                    # Their x may have been lost too, or Redis may have lost the routes.
                    self._routes.clear()
                    self._unroutes += 1
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
        conn, room = self._unregister(peer, inbox)
        release = self._releases.get(peer)
        if release is None and not conn:
            # Never the peer's current connection here: nothing else was on its way to it.
            if unsent:
                done = _Release(list(unsent), room, detached=True, marker_seen=True)
                await self._finish_release(peer, done)
            return
        release = self._releases.setdefault(peer, _Release([], room))
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
        conn, _ = self._unregister(peer, inbox)
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
        # Out of the room here first: a resync issued while the script is out writes the rooms
        # this replica holds, and must not put the peer back in after it (scripts run in the
        # order they were issued). Put back if the script failed.
        local = self._local.get(peer)
        here = local if local is not None and local.room == room else None
        member = here.member if here is not None else b""
        if here is not None:
            self._set_room(peer, here, "", b"")
        try:
            await self._script("leave", room, peer)
        except BaseException:
            if here is not None and self._local.get(peer) is here and not here.room:
                self._set_room(peer, here, room, member)
            raise

    def deliver(
        self, room: str, to: str, frame: bytes, later: Later, origin: Origin
    ) -> Delivery | None:
        """At once on the local fast path (module docstring); else a PUBLISH on a route, or the
        script, whose reply the batch's task hands to ``_routed`` or ``_delivered``."""
        local = self._local.get(to)
        if local is not None and local.room == room and local.settled:
            self._hand_over_here(to, local, frame)
            return Delivery.DELIVERED
        node = self._routes.get(to)
        if node is not None and b"\n" not in frame:  # (JSON frames never hold one: one line)
            sender, re = origin
            routed = b"r %s %s %s %s\n%s\n%s" % (
                to.encode(),
                room.encode(),
                self._node.encode(),
                sender.encode(),
                orjson.dumps(re),
                frame,
            )
            done = partial(self._routed, room, to, frame, node, later)
            self._submit("route", (self._key("ch", node), routed), done)
        else:
            self._deliver_by_script(room, to, frame, later)
        return None

    def _deliver_by_script(self, room: str, to: str, frame: bytes, later: Later) -> None:
        number = next(self._echo_numbers)
        done = partial(self._delivered, number, to, later, self._unroutes)
        self._submit("deliver", (room, to, frame, number), done)

    def _delivered(
        self, number: int, to: str, later: Later, unroutes: int, reply: Outcome[Any]
    ) -> None:
        try:
            result = self._unwrap(reply)
        except Exception as error:  # an outage, or the script failed (a bug): the session says
            later(error)
            return
        if result.startswith(_AT):
            if unroutes == self._unroutes:  # else an x may have come for it meanwhile
                self._routes[to] = result[len(_AT) :].decode()
            later(Delivery.DELIVERED)
            return
        if result != b"delivered":  # published elsewhere: nothing to note here
            self._note_results(number, [to.encode(), result])
        later(Delivery.DELIVERED if result.startswith(_HERE) else _DELIVERY[result])

    def _routed(
        self, room: str, to: str, frame: bytes, node: str, later: Later, reply: Outcome[Any]
    ) -> None:
        """A routed frame's PUBLISH has run. Nobody heard it when that replica is not
        subscribed (restarting, failing over, or dead and not yet noticed): then the route is
        dropped and the frame goes the scripts' way (to the peer's queue, most likely), and the
        session hears that result. Its session waits for this: a next frame of the same sender
        must not be routed ahead of this one's detour through the queue."""
        try:
            heard = self._unwrap(reply)
        except Exception as error:
            later(error)
            return
        if heard:
            later(Delivery.DELIVERED)
            return
        if self._routes.get(to) == node:
            del self._routes[to]
        try:
            self._deliver_by_script(room, to, frame, later)
        except BrokerUnavailable as error:  # the batch stopped: shutting down
            later(error)

    def _tell_sender(self, origin: Origin, result: Delivery) -> None:
        """A frame the sender was told was delivered was refused after all (``e``)."""
        sender, re = origin
        local = self._local.get(sender)
        if local is not None:
            local.inbox.refused(result, re)

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
            self._releases[peer] = _Release([frame], local.room)  # cut off as a slow reader

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
            elif kind == "r":  # frames sent on routes
                self._hand_over_routed(args, frame.split(b"\n"))
            elif kind == "u":  # its hold ended: what was held for the peer is all here now
                local = self._local.get(args[0])
                if local is not None and local.conn == args[1]:
                    local.held = False
            elif kind == "x":  # the peer left the replica a route of ours leads to
                self._unroute(*args)
            elif kind == "y":  # a route holder's routed frames for the peer are all here
                return self._logged(kind, self._answered(args[0]))
            elif kind == "e":  # a frame a session here sent on a route was refused after all
                sender, result = args
                self._tell_sender((sender, orjson.loads(frame)), _DELIVERY[result.encode()])
            elif kind == "f":
                return self._logged(kind, self._flush(args[0]))
            elif kind == "s":  # a resume took the peer: close its connection here
                peer, conn, *holders = args
                self._supersede(peer, conn)
                return self._logged(kind, self._marker(peer, int(holders[0]) if holders else 0))
            elif kind == "m":  # the hand-over marker: nothing older for the peer is on its way
                return self._logged(kind, self._marker(args[0], int(args[2])))
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
            self._submit("reroute", (peer, frame, ""), partial(self._rerouted, None))

    def _rerouted(self, refused: Callable[[bytes], object] | None, reply: Outcome[Any]) -> None:
        """A rerouted frame's result: a refusal goes to ``refused`` (a routed frame's sender)."""
        try:
            result = self._unwrap(reply)
        except BrokerUnavailable as error:
            _not_handed_over("reroute", error)
            return
        except Exception:  # the script failed: a bug, not a reason to stop the batch's task
            log.exception("reroute failed")
            return
        if refused is not None and result in _REFUSALS:
            refused(result)

    def _hand_over_routed(self, header: list[str], lines: list[bytes]) -> None:
        """Frames sent here on routes, one ``r`` message: the first one's header (split), then
        its request id and frame, then for each one joined to it a header line, request id and
        frame (``Command.joins``)."""
        position = 0
        while True:
            peer, room, node, sender = header
            self._hand_over_one_routed(peer, room, node, sender, *lines[position : position + 2])
            position += 2
            if position >= len(lines):
                return
            _, *header = lines[position].decode().split(" ")
            position += 1

    def _hand_over_one_routed(
        self, peer: str, room: str, node: str, sender: str, re: bytes, frame: bytes
    ) -> None:
        """A frame another replica sent here on its route to ``peer``, as a ``d`` frame if the
        peer is still here and in ``room``; else it goes on through Redis, and the sender's
        replica drops the route (its answer, y, finds no release and changes nothing)."""
        local = self._local.get(peer)
        release = self._releases.get(peer)
        if local is not None and local.room == room:
            self._hand_over_here(peer, local, frame)
        elif local is None and release is not None and release.room == room:
            release.frames.append(frame)
        else:
            refused = partial(self._send_refusal, node, sender, re)
            self._submit("reroute", (peer, frame, room), partial(self._rerouted, refused))
            self._tell_replica(node, f"x {peer} {self._node}\n")

    def _send_refusal(self, node: str, sender: str, re: bytes, result: bytes) -> None:
        with contextlib.suppress(BrokerUnavailable):
            self._tell_replica(node, b"e %s %s\n%s" % (sender.encode(), result, re))

    def _tell_replica(self, node: str, message: str | bytes) -> None:
        """Publish ``message`` on ``node``'s channel, in its place among the calls made here."""
        self._submit("message", (self._key("ch", node), message), _ignore)

    def _unroute(self, peer: str, node: str) -> None:
        """``peer`` left ``node``: frames for it go the scripts' way again, and ``node`` hears,
        behind every frame sent to it on the route, that none is left (y)."""
        self._unroutes += 1
        if self._routes.get(peer) == node:
            del self._routes[peer]
        self._tell_replica(node, f"y {peer}\n")

    async def _answered(self, peer: str) -> None:
        release = self._releases.get(peer)
        if release is not None:
            release.answers += 1
            await self._finish_release(peer, release)

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
        self._releases.setdefault(peer, _Release([], local.room))
        self._forget_local(peer, local)
        local.inbox.supersede()

    async def _marker(self, peer: str, holders: int) -> None:
        release = self._releases.get(peer)
        if release is not None:
            release.marker_seen, release.holders = True, holders
            await self._finish_release(peer, release)

    async def _finish_release(self, peer: str, release: _Release, *, overdue: bool = False) -> None:
        passed = release.marker_seen and release.answers >= release.holders
        if release.finishing or not (release.detached and (passed or overdue)):
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

    def _unregister(self, peer: str, inbox: Inbox) -> tuple[str, str]:
        """Forget ``inbox``'s attachment of ``peer`` here; its id and room, or ('', '') if it
        was not current."""
        local = self._local.get(peer)
        if local is None or local.inbox is not inbox:
            return "", ""
        room = local.room
        self._forget_local(peer, local)
        return local.conn, room

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
        """Queue a call (a script's, or a PUBLISH's) whose reply goes to ``done``
        (``ScriptBatch.submit``)."""
        self._connected()
        assert self._batch is not None
        self._batch.submit(self._commands[name], args, done)

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
            return await self._batch.call(self._commands[name], args)
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
