"""Files between real browsers through a real Tallow server: two peers, three peers, cancel."""

from __future__ import annotations

import hashlib
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.app import (
    accept,
    connected_pair,
    create_room,
    join_room,
    peer_ids,
    random_file,
    sas_for,
    save_received,
    wait_secure,
)

MIB = 1024 * 1024


def test_two_browsers_move_a_5_mib_file(
    tallow_server, new_page, tmp_path: Path, artifacts: Path
) -> None:
    alice, bob = new_page(), new_page()
    link = create_room(alice, tallow_server.url)
    join_room(bob, link)
    (alice_sees,) = wait_secure(alice, 1)
    (bob_sees,) = wait_secure(bob, 1)
    assert alice_sees == bob_sees
    assert len(alice_sees.split()) == 4

    path, digest = random_file(tmp_path, "holiday photos.bin", 5 * MIB)
    alice.get_by_test_id("file-input").set_input_files(path)
    assert save_received(bob, path.name) == (path.name, digest)
    expect(bob.get_by_test_id("received-file")).to_have_attribute("data-name", path.name)
    for page in (alice, bob):
        expect(page.get_by_test_id("progress")).to_have_attribute("aria-valuenow", "100")
        expect(page.get_by_role("progressbar")).to_have_count(1)
    expect(alice.locator("li.transfer[data-state=done]")).to_contain_text("checked every byte")

    # Nothing but the Tallow server's own origin was ever asked for (no CDN, no fonts).
    for page in (alice, bob):
        foreign = [u for u in page.log.requests if not u.startswith(tallow_server.url + "/")]
        assert not foreign, foreign
        assert any(u.endswith("/api/ice-servers") for u in page.log.requests)
    bob.screenshot(path=artifacts / "tallow-ui.png", full_page=True)


def test_three_peers_in_one_room(tallow_server, new_page, tmp_path: Path) -> None:
    alice, bob, carol = new_page(), new_page(), new_page()
    link = create_room(alice, tallow_server.url)
    join_room(bob, link)
    join_room(carol, link)
    for page in (alice, bob, carol):
        wait_secure(page, 2)
    ids = {name: set(peer_ids(page)) for name, page in (("a", alice), ("b", bob), ("c", carol))}
    (bob_id,) = ids["a"] & ids["c"]
    (carol_id,) = ids["a"] & ids["b"]
    (alice_id,) = ids["b"] & ids["c"]
    # Each pair has its own keys, and both ends of a pair show the same words.
    assert sas_for(alice, bob_id) == sas_for(bob, alice_id)
    assert sas_for(alice, carol_id) == sas_for(carol, alice_id)
    assert sas_for(bob, carol_id) == sas_for(carol, bob_id)
    assert len({sas_for(alice, bob_id), sas_for(alice, carol_id), sas_for(bob, carol_id)}) == 3

    # The shared input sends to everyone in the room.
    first, first_digest = random_file(tmp_path, "to-everyone.bin", 1 * MIB)
    carol.get_by_test_id("file-input").set_input_files(first)
    assert save_received(alice, first.name) == (first.name, first_digest)
    assert save_received(bob, first.name) == (first.name, first_digest)

    # A person's own input sends to that person only.
    second, second_digest = random_file(tmp_path, "only-bob.txt", 300_000)
    alice.locator(f"[data-testid=peer][data-peer='{bob_id}'] input[type=file]").set_input_files(
        second
    )
    assert save_received(bob, second.name) == (second.name, second_digest)
    expect(alice.locator("li.transfer[data-state=done]")).to_have_count(2)
    expect(carol.locator("li.transfer.in")).to_have_count(0)

    # Dropping a file on a person sends it to that person only.
    dropped = b"dropped on carol\n" * 1000
    drop = bob.evaluate_handle(
        "(text) => { const d = new DataTransfer();"
        " d.items.add(new File([text], 'dropped.txt')); return d; }",
        dropped.decode(),
    )
    bob.locator(f"[data-testid=peer][data-peer='{carol_id}']").dispatch_event(
        "drop", {"dataTransfer": drop}
    )
    assert save_received(carol, "dropped.txt") == (
        "dropped.txt",
        hashlib.sha256(dropped).hexdigest(),
    )
    expect(alice.locator("li.transfer.in")).to_have_count(1)


def wait_started(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=progress]')]"
        ".some(p => Number(p.getAttribute('aria-valuenow')) > 0)"
    )


def big_transfer_running(new_page, base_url: str, tmp_path: Path) -> tuple[Page, Page, Path]:
    """Alice and Bob connected, Alice sending Bob 100 MiB (big.bin), Bob's progress above 0."""
    alice, bob = new_page(), new_page()
    connected_pair(alice, bob, base_url)
    big, _ = random_file(tmp_path, "big.bin", 100 * MIB)
    alice.get_by_test_id("file-input").set_input_files(big)
    accept(bob, big.name)
    wait_started(bob)
    return alice, bob, big


def test_cancel_from_either_side(tallow_server, new_page, tmp_path: Path) -> None:
    # The receiver cancels: the sender stops and says so.
    alice, bob, big = big_transfer_running(new_page, tallow_server.url, tmp_path)
    bob.get_by_role("button", name="Cancel receiving big.bin").click()
    expect(alice.locator("li.transfer.out")).to_have_attribute("data-state", "cancelled")
    expect(alice.locator("li.transfer.out .message")).to_contain_text("cancelled it")
    expect(bob.locator("li.transfer.in")).to_have_attribute("data-state", "cancelled")

    # The sender cancels: the receiver stops and gets no file.
    bob.get_by_test_id("file-input").set_input_files(big)
    accept(alice, big.name)
    wait_started(alice)
    bob.get_by_role("button", name="Cancel sending big.bin").click()
    incoming = alice.locator("li.transfer.in")
    expect(incoming).to_have_attribute("data-state", "cancelled", timeout=5_000)
    expect(incoming.locator(".message")).to_contain_text("cancelled it")
    for page in (alice, bob):
        expect(page.get_by_test_id("received-file")).to_have_count(0)
        expect(page.locator("[data-testid=progress][aria-valuenow='100']")).to_have_count(0)

    # The connection is still good for the next file.
    small, digest = random_file(tmp_path, "after.bin", 200_000)
    alice.get_by_test_id("file-input").set_input_files(small)
    assert save_received(bob, small.name) == (small.name, digest)


def test_peer_leaving_mid_transfer_is_explained(tallow_server, new_page, tmp_path: Path) -> None:
    alice, bob, _ = big_transfer_running(new_page, tallow_server.url, tmp_path)
    bob.close()
    outgoing = alice.locator("li.transfer.out")
    expect(outgoing).to_have_attribute("data-state", "failed")
    expect(outgoing.locator(".message")).to_contain_text("left the room before this finished")
    expect(alice.get_by_test_id("peer")).to_have_count(0)
    expect(alice.locator("#no-peers")).to_be_visible()
