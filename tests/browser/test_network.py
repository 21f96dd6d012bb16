"""Surviving the network: ICE restarts over signaling keep a running transfer going."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from playwright.sync_api import Download, Page, expect

from tests.browser.app import (
    TRANSFER_TIMEOUT_MS,
    connected_pair,
    finish_receiving,
    hook,
    incoming,
    random_file,
    start_receiving,
)
from tests.coturn import run_coturn

MIB = 1024 * 1024
# The app's STALL_TIMEOUT_MS (web/src/peer.js), with room for a new session on two busy cores.
STALL_TIMEOUT_S = 30


def receiving_started(page: Page) -> None:
    page.wait_for_function(
        "() => Number(document.querySelector('li.transfer.in [data-testid=progress]')"
        "?.getAttribute('aria-valuenow')) > 0"
    )


def received_bytes(page: Page) -> int:
    return int(hook(page, "h.transfers.find((t) => t.direction === 'in').bytes"))


def finish_confirming_new_words(
    pages: tuple[Page, Page], receiver: Page, name: str, download: Download
) -> tuple[str, str]:
    """Wait until the receiver checked `name`. If the session was replaced meanwhile (new keys),
    each person confirms the new words, as the app asks them to; the transfer then resumes."""
    row = incoming(receiver, name)
    deadline = time.monotonic() + TRANSFER_TIMEOUT_MS / 1000
    while row.get_attribute("data-state") != "done":
        assert time.monotonic() < deadline, row.get_attribute("data-state")
        for page in pages:
            confirm = page.get_by_test_id("sas-confirm")
            if confirm.count():
                confirm.click()
        time.sleep(0.5)
    return finish_receiving(receiver, name, download)


def test_network_change_restarts_ice_and_the_transfer_goes_on(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(hook=True), new_page(hook=True)
    connected_pair(alice, bob, tallow_server.url)
    ufrag = "h.connections[0].pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1]"
    before = hook(alice, ufrag), hook(bob, ufrag)
    path, digest = random_file(tmp_path, "moving.bin", 24 * MIB)
    alice.get_by_test_id("file-input").set_input_files(path)
    download = start_receiving(bob, path.name)
    receiving_started(bob)
    # What the browser fires when the network comes back (after sleep, or another Wi-Fi).
    bob.evaluate("window.dispatchEvent(new Event('online'))")
    assert finish_receiving(bob, path.name, download) == (path.name, digest)
    assert hook(bob, "h.iceRestarts.length") == 1
    # Both sides use new ICE credentials: the restart was negotiated through the server.
    after = hook(alice, ufrag), hook(bob, ufrag)
    assert after[0] != before[0] and after[1] != before[1], (before, after)
    for page in (alice, bob):
        expect(page.get_by_test_id("peer")).to_have_attribute("data-link", "up")


def test_relay_outage_is_survived_by_an_ice_restart(start_tallow, new_page, tmp_path: Path) -> None:
    with run_coturn(tmp_path) as turn:
        server = start_tallow(env={"TURN_URLS": turn.url, "TURN_SECRET": turn.secret})
        alice, bob = new_page(hook=True), new_page(hook=True)
        connected_pair(alice, bob, server.url, "?relay=1")
        path, digest = random_file(tmp_path, "through-an-outage.bin", 24 * MIB)
        alice.get_by_test_id("file-input").set_input_files(path)
        download = start_receiving(bob, path.name)
        receiving_started(bob)
        # The only path between the browsers goes dead: coturn stops answering. It answers again
        # as soon as both sides noticed: SCTP backs off its retransmissions while the path is
        # dead (doubling each time), so a longer outage only delays the rest (docs/webapp.md).
        coturn = int((tmp_path / "turnserver.pid").read_text())
        os.kill(coturn, signal.SIGSTOP)
        try:
            for page in (alice, bob):
                expect(page.get_by_test_id("peer")).to_have_attribute(
                    "data-link", "reconnecting", timeout=20_000
                )
        finally:
            os.kill(coturn, signal.SIGCONT)
        # Usually the restart carries the transfer on; if the link came back but moved nothing
        # (STALL_TIMEOUT_MS), a new session resumes it, and the new words are confirmed.
        done = finish_confirming_new_words((alice, bob), bob, path.name, download)
        assert done == (path.name, digest)
        assert hook(alice, "h.iceRestarts.length") + hook(bob, "h.iceRestarts.length") >= 1
        for page in (alice, bob):
            expect(page.get_by_test_id("peer")).to_have_attribute("data-link", "up")
            expect(page.get_by_test_id("peer")).to_have_attribute("data-state", "secure")


def test_a_cut_transfer_resumes_from_its_offset_in_a_new_session(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(hook=True), new_page(hook=True)
    connected_pair(alice, bob, tallow_server.url)
    first_words = alice.get_by_test_id("sas").inner_text()
    path, digest = random_file(tmp_path, "cut.bin", 24 * MIB)
    alice.get_by_test_id("file-input").set_input_files(path)
    download = start_receiving(bob, path.name)
    bob.wait_for_function(
        "() => Number(document.querySelector('li.transfer.in [data-testid=progress]')"
        "?.getAttribute('aria-valuenow')) >= 20"
    )
    # The data channel dies under the transfer (as when a path is gone for good).
    hook(alice, "h.connections[0].dc.close()")
    # A new session: new keys, so new words, which both people confirm again.
    for page in (alice, bob):
        page.get_by_test_id("sas-confirm").click(timeout=30_000)
    assert alice.get_by_test_id("sas").inner_text() != first_words
    assert finish_receiving(bob, path.name, download) == (path.name, digest)
    resumed = hook(alice, "h.transfers[0].resumedAt")
    assert resumed["index"] == 0 and resumed["offset"] >= 4 * MIB, resumed
    expect(alice.locator("li.transfer.out")).to_have_attribute("data-state", "done")
    expect(bob.locator("li.transfer.in")).to_have_count(1)


def test_a_channel_that_moves_nothing_after_a_restart_is_replaced(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(hook=True), new_page(hook=True)
    connected_pair(alice, bob, tallow_server.url)  # Bob joined later: he is the initiator
    first_words = alice.get_by_test_id("sas").inner_text()
    path, digest = random_file(tmp_path, "stalled.bin", 24 * MIB)
    alice.get_by_test_id("file-input").set_input_files(path)
    download = start_receiving(bob, path.name)
    receiving_started(bob)
    # From now on Alice's frames go nowhere, as when she keeps sending into a path that an ICE
    # restart replaced; the frames already on their way still arrive.
    hook(alice, "h.connections[0].dc.send = () => {}")
    arrived = -1
    while arrived != received_bytes(bob):
        arrived = received_bytes(bob)
        time.sleep(1)
    assert 0 < arrived < 24 * MIB
    bob.evaluate("window.dispatchEvent(new Event('online'))")
    # The restart completes, but nothing moves: after STALL_TIMEOUT_MS Bob starts a new session.
    for page in (alice, bob):
        page.get_by_test_id("sas-confirm").click(timeout=(STALL_TIMEOUT_S + 30) * 1000)
    assert alice.get_by_test_id("sas").inner_text() != first_words
    assert finish_receiving(bob, path.name, download) == (path.name, digest)
    assert hook(alice, "h.transfers[0].resumedAt") == {"index": 0, "offset": arrived}
    expect(alice.locator("li.transfer.out")).to_have_attribute("data-state", "done")
