"""Shared fixtures: real Tallow processes on free loopback ports, cleaned up after each test.

The launch helpers themselves live in harness/ (bench/ and scripts/soak.py use them too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import TallowProcess, launcher


@pytest.fixture
def start_tallow(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_tallow(env={...}, args=[...])`` -> a healthy TallowProcess."""
    with launcher(tmp_path) as start:
        yield start


@pytest.fixture
def tallow_server(start_tallow: Any) -> TallowProcess:
    """One Tallow with the default (embedded) configuration."""
    return start_tallow()
