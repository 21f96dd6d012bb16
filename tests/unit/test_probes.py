"""Readiness in-process: each check can fail on its own and turns the answer 503."""

from __future__ import annotations

import json

import attrs

from tallow.config import load
from tallow.http.messages import Request
from tallow.http.probes import ready
from tallow.pqc import SelfTest
from tallow.server import build_runtime

REQUEST = Request("GET", "/api/ready", "", {}, "127.0.0.1", False, "test")


async def test_ready_when_all_checks_pass() -> None:
    runtime = build_runtime(load({}))
    response = await ready(runtime, REQUEST)
    assert response.status == 200
    assert json.loads(response.body)["status"] == "ready"


async def test_draining_turns_readiness_503_at_once() -> None:
    runtime = build_runtime(load({}))
    runtime.signaling.drain()
    response = await ready(runtime, REQUEST)
    body = json.loads(response.body)
    assert response.status == 503 and body["status"] == "not-ready"
    assert body["checks"]["draining"] == {"ok": False}
    assert body["checks"]["pqc"]["ok"] and body["checks"]["broker"]["ok"]


async def test_failed_pqc_self_test_is_not_ready() -> None:
    runtime = build_runtime(load({}))
    runtime.selftest = attrs.evolve(runtime.selftest, ok=False, detail="broken")
    response = await ready(runtime, REQUEST)
    assert response.status == 503
    assert json.loads(response.body)["checks"]["pqc"]["detail"] == "broken"
    assert isinstance(runtime.selftest, SelfTest)
