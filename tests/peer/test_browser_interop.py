"""The command-line peer with the real web app in real Chromium, against a real server.

Both roles: the terminal's room joined by the browser (the terminal is the responder) and the
browser's room joined by the terminal (the terminal initiates). Words and SHA-256 are compared on
both sides; the relay test runs both through a real coturn with relay candidates only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.app import create_room, hook, join_room, random_file, save_received, wait_secure
from tests.browser.test_relay import SELECTED_CANDIDATES
from tests.coturn import run_coturn
from tests.peer.cli_peer import PeerProcess


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[PeerProcess]]:
    started: list[PeerProcess] = []
    yield started
    for peer in started:
        peer.kill()


def test_terminal_sends_to_a_browser(tallow_server, new_page, peers, tmp_path: Path) -> None:
    path, digest = random_file(tmp_path, "from-the-terminal.bin", 2 * 1024 * 1024 + 7)
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url], tmp_path)
    peers.append(sender)
    page = new_page()
    join_room(page, sender.value("link"))
    (words,) = wait_secure(page, 1)
    assert sender.value("words") == words
    sender.said(f"see exactly these words: {words}?")
    sender.answer("y")  # the words match: only now does the terminal send
    assert save_received(page, path.name) == (path.name, digest)
    assert sender.wait() == 0, sender.describe()
    assert sender.values("sent") == [f"{path.name} {path.stat().st_size} sha256 {digest}"]


def test_browser_sends_to_the_terminal(tallow_server, new_page, peers, tmp_path: Path) -> None:
    page = new_page()
    link = create_room(page, tallow_server.url)
    out = tmp_path / "inbox"
    receiver = PeerProcess(["receive", link, "--accept", "--out", str(out)], tmp_path)
    peers.append(receiver)
    (words,) = wait_secure(page, 1)
    assert receiver.value("words") == words
    first, first_digest = random_file(tmp_path, "to-the-terminal.bin", 3 * 1024 * 1024)
    second, second_digest = random_file(tmp_path, "a second one.txt", 10)
    page.get_by_test_id("file-input").set_input_files([first, second])
    assert receiver.wait() == 0, receiver.describe()
    assert receiver.values("received") == [
        f"{out / first.name} {first.stat().st_size} sha256 {first_digest}",
        f"{out / second.name} 10 sha256 {second_digest}",
    ]
    assert (out / first.name).read_bytes() == first.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])


def test_relay_only_through_coturn(start_tallow, new_page, peers, tmp_path: Path) -> None:
    with run_coturn(tmp_path) as turn:
        server = start_tallow(env={"TURN_URLS": turn.url, "TURN_SECRET": turn.secret})
        path, digest = random_file(tmp_path, "relayed.bin", 1024 * 1024)
        sender = PeerProcess(["send", str(path), "--server", server.url, "--relay"], tmp_path)
        peers.append(sender)
        page = new_page(hook=True)
        join_room(page, sender.value("link"), "?relay=1")
        (words,) = wait_secure(page, 1)
        assert sender.value("words") == words
        # Only relay candidates on both ends: the browser's live pair runs through coturn.
        assert hook(page, SELECTED_CANDIDATES) == [["relay", "relay"]]
        sender.said("see exactly these words")
        sender.answer("yes")
        assert save_received(page, path.name) == (path.name, digest)
        assert sender.wait() == 0, sender.describe()


def test_terminal_to_terminal_and_a_declined_comparison(tallow_server, peers, tmp_path) -> None:
    path, digest = random_file(tmp_path, "between terminals.bin", 1024 * 1024 + 1)
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url, "--yes"], tmp_path)
    peers.append(sender)
    out = tmp_path / "inbox"
    receiver = PeerProcess(["receive", sender.value("link"), "--accept", "--out", str(out)],
                           tmp_path)  # fmt: skip
    peers.append(receiver)
    assert receiver.value("words") == sender.value("words")
    assert receiver.wait() == 0, receiver.describe()
    assert sender.wait() == 0, sender.describe()
    line = f"{path.stat().st_size} sha256 {digest}"
    assert sender.values("sent") == [f"{path.name} {line}"]
    assert receiver.values("received") == [f"{out / path.name} {line}"]

    # Words not confirmed: the sender sends nothing and exits 3; the receiver is told (4).
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url], tmp_path)
    receiver = PeerProcess(["receive", sender.value("code"), "--server", tallow_server.url,
                            "--accept", "--out", str(tmp_path / "nothing")], tmp_path)  # fmt: skip
    peers += [sender, receiver]
    sender.said("see exactly these words")
    sender.answer("n")
    assert sender.wait() == 3, sender.describe()
    assert receiver.wait() == 4, receiver.describe()
    assert not (tmp_path / "nothing").exists()
