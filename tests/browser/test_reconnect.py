"""The signaling connection drops mid-transfer: pages resume it and keep their room."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from harness.processes import http_get
from tests.browser.app import (
    create_room,
    finish_receiving,
    join_room,
    peer_ids,
    random_file,
    save_received,
    start_receiving,
    wait_secure,
)
from tests.browser.proxy import cuttable_proxy

OUTAGE_SECONDS = 2.0


def server_state(page: Page):
    return page.locator("#server-state")


def test_signaling_drop_resumes_and_keeps_the_room(start_tallow, new_page, tmp_path: Path) -> None:
    server = start_tallow()
    with cuttable_proxy(server.port) as proxy:
        alice, bob = new_page(), new_page()
        for page in (alice, bob):
            # Chromium logs each refused WebSocket attempt as a console error: here, on purpose.
            page.log.expected.append("WebSocket connection to")
        join_room(bob, create_room(alice, proxy.url))
        wait_secure(alice, 1)
        wait_secure(bob, 1)
        before = {"alice": peer_ids(alice), "bob": peer_ids(bob)}

        path, digest = random_file(tmp_path, "long.bin", 60 * 1024 * 1024)
        alice.get_by_test_id("file-input").set_input_files(path)
        download = start_receiving(bob, path.name)
        bob.wait_for_function(
            "() => Number(document.querySelector('[data-testid=progress]')"
            "?.getAttribute('aria-valuenow')) > 0"
        )
        proxy.refusing.set()
        proxy.cut()
        for page in (alice, bob):
            expect(server_state(page)).to_have_attribute("data-state", "reconnecting")
        # The transfer is still running while the server is unreachable.
        expect(bob.get_by_test_id("received-file")).to_have_count(0)
        time.sleep(OUTAGE_SECONDS)
        proxy.refusing.clear()
        for page in (alice, bob):
            expect(server_state(page)).to_have_attribute("data-state", "online", timeout=20_000)

        assert finish_receiving(bob, path.name, download) == (path.name, digest)
        # Same ids, same room: nobody left or rejoined.
        assert {"alice": peer_ids(alice), "bob": peer_ids(bob)} == before
        for page in (alice, bob):
            expect(page.locator("[data-testid=peer][data-state=secure]")).to_have_count(1)
        metrics = http_get(server.url + "/api/metrics")[2].decode()
        resumes = re.search(r"^tallow_resumes_total(?:\{[^}]*\})? (\S+)$", metrics, re.M)
        assert resumes and float(resumes.group(1)) >= 2, metrics

        # Signaling works for the resumed peers: a newcomer connects to both.
        carol = new_page()
        carol.log.expected.append("WebSocket connection to")  # the proxy closes first at the end
        join_room(carol, f"{proxy.url}/#room={alice.get_by_test_id('room-code').inner_text()}")
        wait_secure(carol, 2)
        wait_secure(alice, 2)
        wait_secure(bob, 2)


def test_outage_longer_than_the_grace_period_rejoins_the_room(
    start_tallow, new_page, tmp_path: Path
) -> None:
    server = start_tallow(env={"TALLOW_RESUME_SECONDS": "1"})
    with cuttable_proxy(server.port) as proxy:
        alice, bob = new_page(), new_page()
        for page in (alice, bob):
            page.log.expected.append("WebSocket connection to")
        join_room(bob, create_room(alice, proxy.url))
        room = alice.get_by_test_id("room-code").inner_text()
        old_ids = peer_ids(alice) + peer_ids(bob)
        wait_secure(alice, 1)
        wait_secure(bob, 1)

        proxy.refusing.set()
        proxy.cut()
        time.sleep(3 * OUTAGE_SECONDS)  # the server forgets both peers meanwhile
        proxy.refusing.clear()

        for page in (alice, bob):
            expect(page.get_by_role("alert")).to_contain_text("rejoined the room", timeout=20_000)
            expect(page.get_by_test_id("room-code")).to_have_text(room)
            wait_secure(page, 1)
        assert not set(peer_ids(alice) + peer_ids(bob)) & set(old_ids)
        path, digest = random_file(tmp_path, "after-rejoin.bin", 500_000)
        bob.get_by_test_id("file-input").set_input_files(path)
        assert save_received(alice, path.name) == (path.name, digest)
