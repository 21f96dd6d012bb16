"""What one running Tallow process holds: its settings, broker, signaling service and self-test.

Built by the server before it starts listening and handed to the HTTP app, so a request handler
can reach everything it reports on without globals.
"""

from __future__ import annotations

import time

import attrs

from tallow import __version__
from tallow.broker import Broker
from tallow.config import Settings
from tallow.pqc import SelfTest
from tallow.signaling.service import SignalingService


@attrs.define
class Runtime:
    settings: Settings
    broker: Broker
    signaling: SignalingService
    selftest: SelfTest
    started: float = attrs.field(factory=time.monotonic)
    broker_reached: bool = False  # a readiness check has reached the broker at least once
    version: str = __version__

    @property
    def draining(self) -> bool:
        return self.signaling.draining

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started
