"""One replica's signaling service: its sessions, their heartbeat, reaping expired peers."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

from tallow.broker import Broker, BrokerUnavailable, Interrupted
from tallow.config import Settings
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.readiness import ReadReadiness
from tallow.signaling.session import Session

log = logging.getLogger("tallow.signaling")

REAP_INTERVAL = 1.0  # seconds between checks for peers whose resume grace has ended


class SignalingService:
    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.draining = False
        self.sessions: set[Session] = set()
        self.readiness = ReadReadiness()  # the sessions' sockets: one epoll set, one task
        self._per_ip: Counter[str] = Counter()
        self._writers: trio.Nursery | None = None  # set by run()

    def refusal(self, client_ip: str) -> str | None:
        """Why a new connection from ``client_ip`` must be refused, or None to admit it."""
        if self.draining:
            return "draining"
        limit = self.settings.max_connections_per_ip
        if limit and self._per_ip[client_ip] >= limit:
            return "per-ip-limit"
        return None

    def opened(self, session: Session) -> None:
        """``session`` starts (Session.run): count it, and it against its client's address."""
        self.sessions.add(session)
        self._per_ip[session.client_ip] += 1
        metrics.connections_total.inc()
        metrics.connections_open.inc()

    def closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self._per_ip[session.client_ip] -= 1
        if not self._per_ip[session.client_ip]:
            del self._per_ip[session.client_ip]
        metrics.connections_open.dec()

    async def announce_left(self, room: str, peer: str) -> None:
        frame = p.encode({"type": "peer-left", "room": room, "peer": peer})
        await self.broker.publish(room, frame)

    def drain(self) -> None:
        """Refuse new work and tell every client to resume elsewhere (close 1001)."""
        self.draining = True
        for session in list(self.sessions):
            session.close_soon(p.CLOSE_GOING_AWAY, "server restarting; resume on another")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: own the sockets' read readiness and the outboxes' writer tasks, and every
        heartbeat ping every connection and drop those silent for three.

        One task for the whole replica, not one per connection: a sweep over 10,000 sessions
        every 20 s costs a few milliseconds. Writers live in this task's nursery: a session
        starts one only while its client has a backlog.
        """
        heartbeat = self.settings.heartbeat_seconds
        async with trio.open_nursery() as writers:
            await writers.start(self.readiness.run)
            self._writers = writers
            task_status.started()
            while True:
                await trio.sleep(heartbeat)
                for session in list(self.sessions):
                    session.heartbeat()

    def spawn_writer(self, writer: Callable[[], Awaitable[None]]) -> None:
        """Start an outbox's writer task (Outbox's ``spawn``)."""
        if self._writers is None:
            raise RuntimeError("SignalingService.run is not running")
        self._writers.start_soon(writer)

    async def reap_expired(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forever: announce peer-left for peers whose resume grace ended (and peer-interrupted
        for peers whose replica died); refresh gauges."""
        task_status.started()
        while True:
            try:
                for gone in await self.broker.expired():
                    if isinstance(gone, Interrupted):  # frames to it may be lost: say so
                        notice = {"type": "peer-interrupted", "room": gone.room, "peer": gone.peer}
                        await self.broker.publish(gone.room, p.encode(notice), exclude=gone.peer)
                    elif gone.room is not None:
                        await self.announce_left(gone.room, gone.peer)
                    event(log, logging.DEBUG, "peer expired", peer=gone.peer)
            except BrokerUnavailable as error:
                event(log, logging.WARNING, "cannot reap expired peers", error=str(error))
            rooms, peers = self.broker.counts()
            metrics.rooms_active.set(rooms)
            metrics.peers_active.set(peers)
            await trio.sleep(REAP_INTERVAL)
