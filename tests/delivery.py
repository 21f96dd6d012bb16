"""Broker.deliver awaited: its result, given at once or later from the broker's task."""

from __future__ import annotations

import trio

from tallow.broker import Broker, Delivery, Origin


async def deliver(
    broker: Broker, room: str, to: str, frame: bytes, origin: Origin = ("", None)
) -> Delivery:
    (result,) = await deliver_all(broker, room, to, [frame], origin)
    return result


async def deliver_all(
    broker: Broker, room: str, to: str, frames: list[bytes], origin: Origin = ("", None)
) -> list[Delivery]:
    """``frames`` handed to ``deliver`` one after another in one scheduler tick (so a Redis
    broker sends them in one pipeline), and their results in order; no checkpoint when every
    result came at once."""
    results: dict[int, Delivery | Exception] = {}
    arrived = trio.Event()

    def later(index: int, result: Delivery | Exception) -> None:
        results[index] = result
        if len(results) == len(frames):
            arrived.set()

    for index, frame in enumerate(frames):
        now = broker.deliver(
            room, to, frame, lambda result, index=index: later(index, result), origin
        )
        if now is not None:
            later(index, now)
    if len(results) < len(frames):
        await arrived.wait()
    delivered = []
    for index in range(len(frames)):
        result = results[index]
        if isinstance(result, Exception):
            raise result
        delivered.append(result)
    return delivered
