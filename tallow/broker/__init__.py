"""Brokers: where rooms live and how a message reaches a peer, on one replica or across many.

``open_broker`` picks the implementation from the settings: the embedded in-memory broker for one
process, or Redis fan-out when ``REDIS_URL`` is set.
"""

from __future__ import annotations

from tallow.broker.base import (
    Broker,
    BrokerUnavailable,
    Claim,
    Delivery,
    Expired,
    Inbox,
    Member,
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
    "Member",
    "MemoryBroker",
    "RoomFull",
    "open_broker",
]


def open_broker(settings: Settings) -> Broker:
    if settings.redis_url is None:
        return MemoryBroker(
            resume_seconds=settings.resume_seconds, resume_queue=settings.resume_queue
        )
    from tallow.broker.redis import RedisBroker  # imported only when configured

    return RedisBroker(settings)
