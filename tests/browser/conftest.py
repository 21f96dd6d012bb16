"""Browser-test fixtures: Debian's Chromium driven by Playwright, against real Tallow servers.

Every page gets its own browser context (its own storage, like a separate person). Pages fail the
test on any uncaught script error or console error (a CSP violation is one), and record every URL
they request so tests can prove nothing leaves the server's origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, STREAM_DOWNLOADS, TEST_HOOK

# Two cores shared by several Chromium processes and servers: give assertions room.
expect.set_options(timeout=15_000)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageLog:
    """What one page did: errors it raised, console errors, and every URL it asked for."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []  # substrings of errors a test provokes on purpose
        self.requests: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.on("request", lambda request: self.requests.append(request.url))


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Factory: ``new_page(hook=False, pickers=False, **context_options)`` -> a page in a fresh
    context; without ``pickers`` received files go through the service-worker download stream."""
    contexts = []
    logs: list[PageLog] = []

    def make(hook: bool = False, pickers: bool = False, **options: Any) -> Page:
        context = browser.new_context(accept_downloads=True, **options)
        if not pickers:
            context.add_init_script(STREAM_DOWNLOADS)
        if hook:
            context.add_init_script(TEST_HOOK)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.log = PageLog(page)  # type: ignore[attr-defined]
        logs.append(page.log)  # type: ignore[attr-defined]
        return page

    yield make
    for context in contexts:
        context.close()
    errors = [
        error
        for log in logs
        for error in log.errors
        if not any(expected in error for expected in log.expected)
    ]
    assert not errors, errors


@pytest.fixture
def artifacts() -> Path:
    """Where tests leave screenshots (ignored by git; docs/images holds a chosen copy)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
