"""Peer tests use the browser tests' Chromium and page fixtures."""

from tests.browser.conftest import browser, new_page  # noqa: F401
