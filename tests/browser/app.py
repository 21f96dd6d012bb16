"""Drive the Tallow web app through its documented automation hooks (data-testid attributes)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

TRANSFER_TIMEOUT_MS = 120_000


def create_room(page: Page, base_url: str, query: str = "") -> str:
    """Open Tallow, click "Create room"; returns the join link shown to the user."""
    page.goto(f"{base_url}/{query}")
    page.get_by_test_id("create-room").click()
    link = page.locator("[data-testid=room-link][href*='#room=']")
    link.wait_for()
    href = link.get_attribute("href")
    assert href is not None
    return href


def join_room(page: Page, link: str, query: str = "") -> None:
    """Open a join link (optionally with ?flags inserted before its #room= fragment)."""
    base, fragment = link.split("#", 1)
    page.goto(f"{base}{query}#{fragment}")
    page.get_by_test_id("room-code").wait_for()


def wait_secure(page: Page, peers: int) -> list[str]:
    """Wait until `peers` others are connected with confirmed keys; their verification words."""
    page.locator("[data-testid=peer][data-state=secure]").nth(peers - 1).wait_for()
    assert page.get_by_test_id("peer").count() == peers
    return page.get_by_test_id("sas").all_text_contents()


def connected_pair(alice: Page, bob: Page, base_url: str, query: str = "") -> None:
    """Alice creates a room, Bob joins with its link; both wait for confirmed keys."""
    join_room(bob, create_room(alice, base_url, query), query)
    wait_secure(alice, 1)
    wait_secure(bob, 1)


def sas_for(page: Page, peer_id: str) -> str:
    return page.locator(f"[data-testid=peer][data-peer='{peer_id}'] [data-testid=sas]").inner_text()


def peer_ids(page: Page) -> list[str]:
    """The server-assigned ids of the other peers this page lists."""
    return [peer.get_attribute("data-peer") or "" for peer in page.get_by_test_id("peer").all()]


def random_file(directory: Path, name: str, size: int) -> tuple[Path, str]:
    """A file of random bytes and its SHA-256 hex digest."""
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def save_received(page: Page, name: str, timeout: float = TRANSFER_TIMEOUT_MS) -> tuple[str, str]:
    """Wait for the received-file link for `name`, download it; (suggested name, SHA-256)."""
    link = page.locator(f"[data-testid=received-file][download='{name}']")
    link.wait_for(timeout=timeout)
    with page.expect_download() as download:
        link.click()
    path = download.value.path()
    return download.value.suggested_filename, hashlib.sha256(path.read_bytes()).hexdigest()


def hook(page: Page, expression: str) -> Any:
    """Evaluate `expression` with `h` bound to the page's test hook (see conftest.TEST_HOOK)."""
    return page.evaluate(
        f"(() => {{ const h = window.__tallowTestHook; return ({expression}); }})()"
    )
