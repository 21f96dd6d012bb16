"""Broker.deliver awaited: its result, given at once or later from the broker's task."""

from __future__ import annotations

import trio

from tallow.broker import Broker, Delivery


async def deliver(broker: Broker, room: str, to: str, frame: bytes) -> Delivery:
    results: list[Delivery | Exception] = []
    arrived = trio.Event()

    def later(result: Delivery | Exception) -> None:
        results.append(result)
        arrived.set()

    now = broker.deliver(room, to, frame, later)
    if now is not None:
        return now
    await arrived.wait()
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]
