"""Brokers: where rooms live and how a message reaches a peer, on one replica or across many.

``open_broker`` picks the implementation from ``REDIS_URL``: none is the embedded in-memory broker
for one process; any Redis scheme (plain, TLS, Sentinel) is Redis fan-out. Both take the settings.
"""

from __future__ import annotations

from tallow.broker.base import (
    Broker,
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
from tallow.broker.memory import MemoryBroker
from tallow.config import Settings

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Claim",
    "Delivery",
    "Expired",
    "Inbox",
    "Interrupted",
    "Later",
    "Member",
    "MemoryBroker",
    "Origin",
    "RoomFull",
    "open_broker",
]


def open_broker(settings: Settings) -> Broker:
    if settings.redis_url is None:
        return MemoryBroker(settings)
    from tallow.broker.redis import RedisBroker  # imported only when configured

    return RedisBroker(settings)
