"""Readiness when the broker is down: a shared Redis must not take every replica out at once."""

from __future__ import annotations

import json

from tallow.broker import BrokerUnavailable, MemoryBroker
from tallow.config import load
from tallow.http.probes import ready
from tallow.server import build_runtime
from tests.unit.test_probes import REQUEST


class DownBroker(MemoryBroker):
    """The embedded broker, answering pings as a broker in an outage does."""

    def __init__(self, shared: bool) -> None:
        super().__init__(load({}))
        self.shared = shared

    async def ping(self) -> float:
        raise BrokerUnavailable("connection refused")


async def check(shared: bool, reached_before: bool = True) -> tuple[int, dict]:
    runtime = build_runtime(load({}))
    runtime.broker = DownBroker(shared)
    runtime.broker_reached = reached_before
    response = await ready(runtime, REQUEST)
    return response.status, json.loads(response.body)


async def test_a_shared_broker_outage_keeps_replicas_ready_but_says_so() -> None:
    status, body = await check(shared=True)
    assert status == 200
    assert body["checks"]["broker"] == {
        "ok": True,
        "degraded": True,
        "broker": "memory",
        "detail": "connection refused",
    }


async def test_a_private_broker_outage_makes_the_replica_not_ready() -> None:
    status, body = await check(shared=False)
    assert status == 503 and body["checks"]["broker"]["ok"] is False


async def test_a_shared_broker_never_reached_is_a_misconfiguration_not_ready() -> None:
    status, body = await check(shared=True, reached_before=False)
    assert status == 503 and body["checks"]["broker"]["degraded"] is True
