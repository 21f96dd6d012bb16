"""The signaling service of one replica: runs sessions, keeps them alive, reaps expired peers."""

from __future__ import annotations

import logging
from collections import Counter

import trio

from tallow.broker import Broker, BrokerUnavailable
from tallow.config import Settings
from tallow.observability import metrics
from tallow.observability.logs import event
from tallow.signaling import protocol as p
from tallow.signaling.session import Session
from tallow.signaling.transport import Transport

log = logging.getLogger("tallow.signaling")

REAP_INTERVAL = 1.0  # seconds between checks for peers whose resume grace has ended


class SignalingService:
    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.draining = False
        self.sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()

    def refusal(self, client_ip: str) -> str | None:
        """Why a new connection from ``client_ip`` must be refused, or None to admit it."""
        if self.draining:
            return "draining"
        limit = self.settings.max_connections_per_ip
        if limit and self._per_ip[client_ip] >= limit:
            return "per-ip-limit"
        return None

    async def serve(self, transport: Transport, client_ip: str, resume: str | None) -> None:
        """Run one accepted connection until it ends."""
        session = Session(self, transport)
        self.sessions.add(session)
        self._per_ip[client_ip] += 1
        metrics.connections_total.inc()
        metrics.connections_open.inc()
        try:
            await session.run(resume)
        finally:
            self.sessions.discard(session)
            self._per_ip[client_ip] -= 1
            if not self._per_ip[client_ip]:
                del self._per_ip[client_ip]
            metrics.connections_open.dec()

    async def announce_left(self, room: str, peer: str) -> None:
        frame = p.encode({"type": "peer-left", "room": room, "peer": peer})
        await self.broker.publish(room, frame)

    def drain(self) -> None:
        """Refuse new work and tell every client to resume elsewhere (close 1001)."""
        self.draining = True
        for session in list(self.sessions):
            session.close_soon(p.CLOSE_GOING_AWAY, "server restarting; resume on another")

    async def keep_alive(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forever, every heartbeat: ping every connection, drop those silent for three.

        One task for the whole replica, not one per connection: a sweep over 10,000 sessions
        every 20 s costs a few milliseconds.
        """
        task_status.started()
        heartbeat = self.settings.heartbeat_seconds
        while True:
            await trio.sleep(heartbeat)
            silent_since = trio.current_time() - 3 * heartbeat
            for session in list(self.sessions):
                session.heartbeat(silent_since)

    async def reap_expired(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forever: announce peer-left for peers whose resume grace ended; refresh gauges."""
        task_status.started()
        while True:
            try:
                for gone in await self.broker.expired():
                    if gone.room is not None:
                        await self.announce_left(gone.room, gone.peer)
                    event(log, logging.DEBUG, "peer expired", peer=gone.peer)
            except BrokerUnavailable as error:
                event(log, logging.WARNING, "cannot reap expired peers", error=str(error))
            rooms, peers = self.broker.counts()
            metrics.rooms_active.set(rooms)
            metrics.peers_active.set(peers)
            await trio.sleep(REAP_INTERVAL)
