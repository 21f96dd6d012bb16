"""Relay-only transfers through a real coturn, with credentials from /api/ice-servers."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser.app import create_room, hook, join_room, random_file, save_received, wait_secure
from tests.coturn import run_coturn

SELECTED_CANDIDATES = """
Promise.all(h.connections.map(async ({pc}) => {
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === 'transport');
  const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = stats.find((s) => s.id === pair.localCandidateId);
  const remote = stats.find((s) => s.id === pair.remoteCandidateId);
  return [local.candidateType, remote.candidateType];
}))
"""


def test_relay_only_transfer_through_coturn(start_tallow, new_page, tmp_path: Path) -> None:
    with run_coturn(tmp_path) as turn:
        server = start_tallow(env={"TURN_URLS": turn.url, "TURN_SECRET": turn.secret})
        alice, bob = new_page(hook=True), new_page(hook=True)
        join_room(bob, create_room(alice, server.url, "?relay=1"), "?relay=1")
        try:
            wait_secure(alice, 1)
            wait_secure(bob, 1)
        except PlaywrightError as error:
            peers = [page.get_by_test_id("peer").all_inner_texts() for page in (alice, bob)]
            raise AssertionError(f"{error}\npeers: {peers}\ncoturn log:\n{turn.log()}") from error
        for page in (alice, bob):
            # Only relay candidates were gathered, and the live pair runs through coturn.
            assert hook(page, SELECTED_CANDIDATES) == [["relay", "relay"]]

        path, digest = random_file(tmp_path, "through-the-relay.bin", 3 * 1024 * 1024)
        alice.get_by_test_id("file-input").set_input_files(path)
        assert save_received(bob, path.name) == (path.name, digest)


def test_relay_only_without_a_relay_says_what_to_do(tallow_server, new_page) -> None:
    alice, bob = new_page(), new_page()
    join_room(bob, create_room(alice, tallow_server.url, "?relay=1"), "?relay=1")
    for page in (alice, bob):
        peer = page.locator("[data-testid=peer][data-state=failed]")
        expect(peer).to_contain_text("this Tallow server offers no TURN relay")
        expect(peer).to_contain_text("Remove relay=1 from the address")
        expect(page.get_by_test_id("sas")).to_have_count(0)
