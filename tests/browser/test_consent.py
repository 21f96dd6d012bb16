"""Verification that counts and nothing received without consent, in real Chromium pages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.app import (
    accept,
    create_room,
    incoming,
    join_room,
    random_file,
    save_received,
    wait_secure,
)

WAITING_OFFERS = 16  # MAX_WAITING_OFFERS in web/src/transfer.js


def record_sent_frames(page: Page, frames: list[str]) -> None:
    """Append every WebSocket text frame the page sends to the server to `frames`."""
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))


def test_send_waits_for_verified_words_and_the_receivers_answer(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(), new_page()
    sent: list[str] = []
    record_sent_frames(alice, sent)
    record_sent_frames(bob, sent)
    alice.goto(tallow_server.url)
    alice.locator("#name").fill("Alice Liddell")
    alice.locator("#name").dispatch_event("change")
    join_room(bob, create_room(alice, tallow_server.url))
    wait_secure(alice, 1, verify=False)
    wait_secure(bob, 1, verify=False)
    bob_id = alice.get_by_test_id("peer").get_attribute("data-peer")
    expect(alice.get_by_test_id("peer")).to_have_attribute("data-verified", "false")
    # The name arrived end to end.
    expect(bob.get_by_test_id("peer").locator("h3")).to_have_text("Alice Liddell")

    # "Send to everyone" goes to verified peers only: nobody yet.
    path, digest = random_file(tmp_path, "report.pdf", 300_000)
    alice.get_by_test_id("file-input").set_input_files(path)
    expect(alice.get_by_role("alert").first).to_contain_text("words you confirmed")
    # Sending to Bob himself asks for the words first and waits.
    alice.locator(f"[data-testid=peer][data-peer='{bob_id}'] input[type=file]").set_input_files(
        path
    )
    expect(alice.get_by_test_id("peer")).to_contain_text("compare the words with")
    bob.wait_for_timeout(500)
    expect(bob.locator("li.transfer")).to_have_count(0)
    alice.get_by_test_id("sas-confirm").click()
    expect(alice.get_by_test_id("peer")).to_have_attribute("data-verified", "true")

    # The offer waits for Bob: he declines, and Alice is told.
    row = incoming(bob, path.name)
    expect(row).to_have_attribute("data-state", "offered")
    expect(row).to_contain_text("from Alice Liddell")
    row.get_by_test_id("decline-file").click()
    expect(alice.locator("li.transfer.out")).to_have_attribute("data-state", "declined")
    expect(alice.locator("li.transfer.out .message")).to_contain_text("declined it")

    # Sent again (Alice is verified now), accepted: it arrives intact.
    alice.get_by_test_id("file-input").set_input_files(path)
    bob_rows = bob.locator("li.transfer.in")
    expect(bob_rows).to_have_count(2)
    assert save_received(bob, path.name) == (path.name, digest)
    expect(alice.locator("li.transfer.out").first).to_have_attribute("data-state", "done")

    # The server never saw a name: join carries none, and no frame holds it.
    joins = [json.loads(f) for f in sent if '"join"' in f]
    assert len(joins) == 2
    assert all(set(j) == {"type", "room", "id"} for j in joins), joins
    assert not [f for f in sent if "Liddell" in f]


def test_text_snippet_with_copy_and_names_stripped_of_format_characters(
    tallow_server, new_page
) -> None:
    alice = new_page()
    bob = new_page(permissions=["clipboard-read", "clipboard-write"])
    join_room(bob, create_room(alice, tallow_server.url))
    wait_secure(alice, 1)
    wait_secure(bob, 1)

    text = "Meet at https://example.org/a?b=1 — 9:30 ✓\nsecond line"
    alice.get_by_test_id("text-input").fill(text)
    alice.get_by_test_id("send-text").click()
    row = accept(bob, "Text")
    expect(row).to_have_attribute("data-state", "done")
    expect(row.get_by_test_id("received-text")).to_have_text(text)
    row.get_by_role("button", name="Copy").click()
    assert bob.evaluate("navigator.clipboard.readText()") == text

    # A right-to-left override would show "invoice_exe.pdf" for an .exe: it is stripped.
    disguised = "invoice_\u202efdp.exe"
    payload = b"MZ not really"
    alice.get_by_test_id("file-input").set_input_files(
        files=[{"name": disguised, "mimeType": "application/octet-stream", "buffer": payload}]
    )
    assert save_received(bob, "invoice_fdp.exe") == (
        "invoice_fdp.exe",
        hashlib.sha256(payload).hexdigest(),
    )
    expect(bob.get_by_test_id("received-file").last).to_have_attribute(
        "data-name", "invoice_fdp.exe"
    )


def test_offers_waiting_for_an_answer_are_bounded(tallow_server, new_page) -> None:
    alice, bob = new_page(), new_page()
    join_room(bob, create_room(alice, tallow_server.url))
    wait_secure(alice, 1)
    wait_secure(bob, 1)
    for n in range(WAITING_OFFERS + 1):
        alice.get_by_test_id("file-input").set_input_files(
            files=[{"name": f"n{n}.txt", "mimeType": "text/plain", "buffer": b"x"}]
        )
    # The 17th is declined for the person, who still has 16 to answer; the sender is told why.
    busy = alice.locator("li.transfer.out[data-state=declined]")
    expect(busy).to_have_count(1)
    expect(busy).to_contain_text(f"n{WAITING_OFFERS}.txt")
    expect(busy.locator(".message")).to_contain_text("too many offers waiting")
    expect(bob.locator("li.transfer.in[data-state=offered]")).to_have_count(WAITING_OFFERS)
