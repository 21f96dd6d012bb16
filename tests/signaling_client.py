"""The signaling test client under its tests/ name: it lives in harness/client.py (bench/ and
scripts/soak.py use it too)."""

from harness.client import Client, connect

__all__ = ["Client", "connect"]
