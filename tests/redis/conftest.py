"""Fixtures for the Redis fan-out tests: a real redis-server and replicas of Tallow sharing it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import TallowProcess
from harness.redis import RedisServer

# Short grace periods keep the failure tests fast; the values under test are named in each test.
REPLICA_ENV = {"TALLOW_RESUME_SECONDS": "3"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def replicas(start_tallow: Any, redis_server: RedisServer) -> Callable[..., list[TallowProcess]]:
    """``replicas(n, **env)`` -> n Tallow processes sharing ``redis_server``."""

    def start(count: int = 2, url: str | None = None, **env: str) -> list[TallowProcess]:
        settings = {**REPLICA_ENV, "REDIS_URL": url or redis_server.url, **env}
        settings.setdefault("REDIS_PREFIX", redis_server.prefix)
        return [start_tallow(env=settings) for _ in range(count)]

    return start
