"""Redis processes for tests under their tests/ name: they live in harness/redis.py (bench/
and scripts/soak.py use them too)."""

from harness.redis import RedisServer, Sentinel, eventually, signal_until_through

__all__ = ["RedisServer", "Sentinel", "eventually", "signal_until_through"]
