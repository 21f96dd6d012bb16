"""Drive the Tallow web app through its documented automation hooks (data-testid attributes)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Download, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

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


def wait_secure(page: Page, peers: int, verify: bool = True) -> list[str]:
    """Wait until `peers` others are connected with confirmed keys; their verification words.
    With `verify` the person then confirms the words match for each of them (`sas-confirm`),
    which sending needs."""
    try:
        page.locator("[data-testid=peer][data-state=secure]").nth(peers - 1).wait_for()
    except PlaywrightTimeoutError as error:
        # Say what each peer of this page showed, so a timeout tells a stall from a failure.
        shown = page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=peer]')].map((li) =>"
            " `${li.dataset.peer}: ${li.dataset.state}:"
            " ${li.querySelector('.problem')?.textContent ?? ''}`)"
        )
        raise AssertionError(f"{len(shown)} peer(s), not {peers} secure: {shown}") from error
    assert page.get_by_test_id("peer").count() == peers
    words = page.get_by_test_id("sas").all_text_contents()
    if verify:
        verify_all(page)
    return words


def verify_all(page: Page) -> None:
    """The person compared the words with everyone listed and confirms they match."""
    buttons = page.get_by_test_id("sas-confirm")
    for _ in range(buttons.count()):
        buttons.first.click()  # each click re-renders that peer without its button
    expect(page.locator("[data-testid=peer][data-verified=false]")).to_have_count(0)


def connected_pair(alice: Page, bob: Page, base_url: str, query: str = "") -> None:
    """Alice creates a room, Bob joins with its link; both wait for keys and confirm the words."""
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


def incoming(page: Page, name: str) -> Locator:
    """The newest incoming transfer row titled `name` (new rows go on top)."""
    return (
        page.locator("li.transfer.in")
        .filter(has=page.locator(".name", has_text=re.compile(f"^{re.escape(name)}$")))
        .first
    )


def accept(page: Page, name: str, timeout: float = TRANSFER_TIMEOUT_MS) -> Locator:
    """Wait for the offer titled `name` and accept it (no download expected: text, pickers)."""
    row = incoming(page, name)
    row.get_by_test_id("accept-file").click(timeout=timeout)
    return row


def start_receiving(page: Page, name: str, timeout: float = TRANSFER_TIMEOUT_MS) -> Download:
    """Accept the offer titled `name`; returns the download the browser streams it into."""
    button = incoming(page, name).get_by_test_id("accept-file")
    button.wait_for(timeout=timeout)
    with page.expect_download(timeout=timeout) as download:
        button.click()
    return download.value


def finish_receiving(
    page: Page, name: str, download: Download, timeout: float = TRANSFER_TIMEOUT_MS
) -> tuple[str, str]:
    """Wait until the transfer titled `name` is checked; (suggested name, SHA-256 of the bytes
    the browser's download holds)."""
    expect(incoming(page, name)).to_have_attribute("data-state", "done", timeout=timeout)
    return download.suggested_filename, sha256_file(download.path())


def save_received(page: Page, name: str, timeout: float = TRANSFER_TIMEOUT_MS) -> tuple[str, str]:
    """Accept the offer titled `name` and wait until it is checked; returns (the download's
    suggested name, SHA-256 of the downloaded bytes)."""
    return finish_receiving(page, name, start_receiving(page, name, timeout), timeout)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def hook(page: Page, expression: str) -> Any:
    """Evaluate `expression` with `h` bound to the page's test hook (see conftest.TEST_HOOK)."""
    return page.evaluate(
        f"(() => {{ const h = window.__tallowTestHook; return ({expression}); }})()"
    )
