"""Deployment checks. The container test is slow (it builds an image): it runs only when
selected with `-m container` (scripts/container-test.sh), never in the default run."""

from __future__ import annotations

import pytest

CONTAINER = "container"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CONTAINER}: builds and runs the container image (scripts/container-test.sh)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CONTAINER in (config.option.markexpr or ""):
        return
    slow = [item for item in items if item.get_closest_marker(CONTAINER)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker(CONTAINER)]
