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


async def deliver_all(broker: Broker, room: str, to: str, frames: list[bytes]) -> list[Delivery]:
    """``frames`` handed to ``deliver`` one after another in one scheduler tick (so a Redis
    broker sends them in one pipeline), and their results in order."""
    results: dict[int, Delivery | Exception] = {}
    arrived = trio.Event()

    def later(index: int, result: Delivery | Exception) -> None:
        results[index] = result
        if len(results) == len(frames):
            arrived.set()

    for index, frame in enumerate(frames):
        now = broker.deliver(room, to, frame, lambda result, index=index: later(index, result))
        if now is not None:
            later(index, now)
    await arrived.wait()
    ordered = [results[index] for index in range(len(frames))]
    for result in ordered:
        if isinstance(result, Exception):
            raise result
    return ordered  # type: ignore[return-value]
