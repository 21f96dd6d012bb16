"""The single-server resume tests, rerun on replicas sharing Redis.

Each test of tests/integration/test_resume.py runs here unchanged against a "server" whose
``ws_url`` alternates between two replicas, so consecutive clients land on different replicas:
resume must behave across replicas exactly as on one. (test_cross_replica.py covers the other
rows of PROTOCOL.md; the slow reader has its own cross-replica test in
test_resume_and_failures.py.)
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from harness.processes import TallowProcess
from harness.redis import RedisServer
from tests.integration.test_resume import (
    test_resume_keeps_peer_and_room_and_delivers_what_was_queued,
    test_resume_queue_is_bounded_and_the_sender_is_told,
    test_resume_token_is_single_use,
    test_resume_while_old_connection_still_open_supersedes_it,
    test_unknown_or_expired_token_gives_a_fresh_identity,
)


@attrs.define
class Replicas:
    """Looks like one TallowProcess; each ``ws_url`` read picks the next replica."""

    members: list[TallowProcess]
    turn: int = 0

    @property
    def ws_url(self) -> str:
        self.turn += 1
        return self.members[self.turn % len(self.members)].ws_url

    def metric(self, name: str) -> float:
        """The service's value: the sum over the replicas."""
        return sum(member.metric(name) for member in self.members)

    wait_metric = TallowProcess.wait_metric  # polls ``self.metric``: the sum, here

    def __getattr__(self, name: str) -> Any:
        return getattr(self.members[0], name)


@pytest.fixture
def start_tallow(start_tallow: Any, redis_server: RedisServer) -> Any:
    """The shared factory, wrapped: each "server" is two replicas sharing ``redis_server``.

    tests/conftest.py's ``tallow_server`` builds on this one, so it yields replicas too.
    """

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> Replicas:
        full = {"REDIS_URL": redis_server.url, **(env or {})}
        return Replicas([start_tallow(env=full, **kwargs) for _ in range(2)])

    return start


__all__ = [
    "test_resume_keeps_peer_and_room_and_delivers_what_was_queued",
    "test_resume_queue_is_bounded_and_the_sender_is_told",
    "test_resume_token_is_single_use",
    "test_resume_while_old_connection_still_open_supersedes_it",
    "test_unknown_or_expired_token_gives_a_fresh_identity",
]
