"""The command-line peer (tallow send / receive as child processes) with the real web app in
real Chromium and with itself, against a real server.

Both roles: the terminal's room joined by the browser (the terminal is the responder) and the
browser's room joined by the terminal (the terminal initiates). Words and SHA-256 are compared on
both sides; folders, text, declines and a relay-only connection through a real coturn too.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

# Through the module, not by name: the helpers for offers (accept, incoming, start_receiving)
# come with the web app's application protocol (docs/webapp.md).
from tests.browser import app
from tests.browser.test_relay import SELECTED_CANDIDATES
from tests.coturn import run_coturn
from tests.peer.cli_peer import PeerProcess


@pytest.fixture
def peers() -> Iterator[list[PeerProcess]]:
    started: list[PeerProcess] = []
    yield started
    for peer in started:
        peer.kill()


def make_folder(root: Path) -> dict[str, str]:
    """A nested folder `album` under `root`; relative path -> SHA-256 of each file."""
    files = {
        "album/cover.bin": 200_000,
        "album/2024/summer/beach.bin": 150_000,
        "album/2024/notes.txt": 0,
    }
    digests = {}
    for relative, size in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        digests[relative] = app.random_file((root / relative).parent, Path(relative).name, size)[1]
    return digests


def test_terminal_sends_files_a_folder_and_text_to_a_browser(
    tallow_server, new_page, peers, tmp_path: Path
) -> None:
    path, digest = app.random_file(tmp_path, "from-the-terminal.bin", 2 * 1024 * 1024 + 7)
    tree = make_folder(tmp_path)
    text = "Meet at 9:30 ✓\nsecond line"
    sender = PeerProcess(
        ["send", str(path), str(tmp_path / "album"), "--text", text, "--server",
         tallow_server.url, "--name", "Ada's laptop"], tmp_path,
    )  # fmt: skip
    peers.append(sender)
    page = new_page()
    app.join_room(page, sender.value("link"))
    (words,) = app.wait_secure(page, 1)
    assert sender.value("words") == words
    expect(page.get_by_test_id("peer").locator("h3")).to_have_text("Ada's laptop")
    sender.said(f"see exactly these words: {words}?")
    page.wait_for_timeout(300)
    expect(page.locator("li.transfer")).to_have_count(0)  # nothing offered before the answer
    sender.answer("y")

    assert app.save_received(page, path.name) == (path.name, digest)
    download = app.start_receiving(page, "album")
    expect(app.incoming(page, "album")).to_have_attribute("data-state", "done")
    with zipfile.ZipFile(download.path()) as archive:
        got = {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()}
    assert got == tree
    row = app.accept(page, "Text")
    expect(row.get_by_test_id("received-text")).to_have_text(text)

    assert sender.wait() == 0, sender.describe()
    sizes = {name: (tmp_path / name).stat().st_size for name in tree}
    assert sorted(sender.values("sent")) == sorted(
        [
            f"{path.name} {path.stat().st_size} sha256 {digest}",
            *(f"{name} {sizes[name]} sha256 {tree[name]}" for name in tree),
            f"text.txt {len(text.encode())} sha256 {hashlib.sha256(text.encode()).hexdigest()}",
        ]
    )


def test_browser_sends_to_the_terminal(tallow_server, new_page, peers, tmp_path: Path) -> None:
    page = new_page()
    link = app.create_room(page, tallow_server.url)
    out = tmp_path / "inbox"
    receiver = PeerProcess(["receive", link, "--accept", "--out", str(out)], tmp_path)
    peers.append(receiver)
    (words,) = app.wait_secure(page, 1)
    assert receiver.value("words") == words
    first, first_digest = app.random_file(tmp_path, "to-the-terminal.bin", 3 * 1024 * 1024)
    second, second_digest = app.random_file(tmp_path, "a second one.txt", 10)
    page.get_by_test_id("file-input").set_input_files([first, second])  # one offer of two files
    text = "from the browser\nwith ünïcode"
    page.get_by_test_id("text-input").fill(text)
    page.get_by_test_id("send-text").click()
    assert receiver.wait() == 0, receiver.describe()
    assert receiver.values("received") == [
        f"{out / first.name} {first.stat().st_size} sha256 {first_digest}",
        f"{out / second.name} 10 sha256 {second_digest}",
    ]
    assert (out / first.name).read_bytes() == first.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])
    assert text in "\n".join(receiver.lines)
    expect(page.locator("li.transfer.out[data-state=done]")).to_have_count(2)


def test_declines_both_ways(tallow_server, new_page, peers, tmp_path: Path) -> None:
    path, _ = app.random_file(tmp_path, "unwanted.bin", 100_000)
    # The browser declines the terminal's offer: the sender exits 4.
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url, "--yes"], tmp_path)
    peers.append(sender)
    page = new_page()
    app.join_room(page, sender.value("link"))
    app.wait_secure(page, 1)
    app.incoming(page, path.name).get_by_test_id("decline-file").click()
    assert sender.wait() == 4, sender.describe()
    sender.said("declined it")

    # The terminal's person declines the browser's offer: the browser is told, receiver exits 3.
    page = new_page()
    link = app.create_room(page, tallow_server.url)
    receiver = PeerProcess(["receive", link, "--out", str(tmp_path / "nothing")], tmp_path)
    peers.append(receiver)
    app.wait_secure(page, 1)
    page.get_by_test_id("file-input").set_input_files(path)
    receiver.said(f"Accept {path.name} from")
    receiver.answer("n")
    expect(page.locator("li.transfer.out")).to_have_attribute("data-state", "declined")
    assert receiver.wait() == 3, receiver.describe()
    assert not (tmp_path / "nothing").exists()


def test_relay_only_through_coturn(start_tallow, new_page, peers, tmp_path: Path) -> None:
    with run_coturn(tmp_path) as turn:
        server = start_tallow(env={"TURN_URLS": turn.url, "TURN_SECRET": turn.secret})
        path, digest = app.random_file(tmp_path, "relayed.bin", 1024 * 1024)
        sender = PeerProcess(["send", str(path), "--server", server.url, "--relay"], tmp_path)
        peers.append(sender)
        page = new_page(hook=True)
        app.join_room(page, sender.value("link"), "?relay=1")
        (words,) = app.wait_secure(page, 1)
        assert sender.value("words") == words
        # Only relay candidates on both ends: the browser's live pair runs through coturn.
        assert app.hook(page, SELECTED_CANDIDATES) == [["relay", "relay"]]
        sender.said("see exactly these words")
        sender.answer("yes")
        assert app.save_received(page, path.name) == (path.name, digest)
        assert sender.wait() == 0, sender.describe()


def test_terminal_to_terminal_and_a_declined_comparison(tallow_server, peers, tmp_path) -> None:
    path, digest = app.random_file(tmp_path, "between terminals.bin", 1024 * 1024 + 1)
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


def test_ctrl_c_cancels_and_tells_the_other_side(tallow_server, peers, tmp_path) -> None:
    path, _ = app.random_file(tmp_path, "long.bin", 64 * 1024 * 1024)
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url, "--yes"], tmp_path)
    out = tmp_path / "inbox"
    receiver = PeerProcess(["receive", sender.value("link"), "--accept", "--out", str(out)],
                           tmp_path)  # fmt: skip
    peers += [sender, receiver]
    receiver.said("--accept: taking long.bin")
    deadline = time.monotonic() + 30
    while not any(p.name.endswith(".tallow-part") and p.stat().st_size for p in out.glob(".*")):
        assert time.monotonic() < deadline, receiver.describe()
        time.sleep(0.05)
    receiver.interrupt()
    assert receiver.wait() == 130, receiver.describe()
    receiver.said("cancelled; the other side was told")
    assert sender.wait() == 4, sender.describe()
    sender.said("Terminal cancelled it")
    assert list(out.iterdir()) == []  # the part file is gone


def test_a_peer_that_never_connects_is_given_up_after_the_timeout(tallow_server, peers, tmp_path):
    path, _ = app.random_file(tmp_path, "waiting.bin", 10)
    sender = PeerProcess(["send", str(path), "--server", tallow_server.url,
                          "--connect-timeout", "2"], tmp_path)  # fmt: skip
    peers.append(sender)
    # A client that joins the room and then stays silent (no SDP, no handshake).
    with connect(tallow_server.ws_url) as silent:
        assert json.loads(silent.recv())["type"] == "welcome"
        silent.send(json.dumps({"type": "join", "room": sender.value("code")}))
        assert json.loads(silent.recv())["type"] == "joined"
        started = time.monotonic()
        assert sender.wait() == 1, sender.describe()
        assert 2 <= time.monotonic() - started < 15
    sender.said("could not connect to Someone within 2 s")


def test_an_interrupted_transfer_resumes_where_it_stopped(start_tallow, peers, tmp_path) -> None:
    # A short grace period, so the receiver hears at once that the killed sender left.
    server = start_tallow(env={"TALLOW_RESUME_SECONDS": "1"})
    path, digest = app.random_file(tmp_path, "big.bin", 48 * 1024 * 1024)
    out = tmp_path / "inbox"
    sender = PeerProcess(["send", str(path), "--server", server.url, "--yes"], tmp_path)
    receiver = PeerProcess(["receive", sender.value("link"), "--accept", "--out", str(out)],
                           tmp_path)  # fmt: skip
    peers += [sender, receiver]
    part = out / ".big.bin.tallow-part"
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 4 * 1024 * 1024):
        assert time.monotonic() < deadline, receiver.describe()
        time.sleep(0.02)
    sender.kill()  # the connection is lost, nobody cancelled
    assert receiver.wait() == 4, receiver.describe()
    kept = part.stat().st_size
    assert 0 < kept < path.stat().st_size and kept % 65_515 == 0

    # The same file offered again (same transfer id): asked about, then resumed where it was.
    sender = PeerProcess(["send", str(path), "--server", server.url, "--yes"], tmp_path)
    receiver = PeerProcess(["receive", sender.value("link"), "--out", str(out)], tmp_path)
    peers += [sender, receiver]
    receiver.said(f"Accept the rest of big.bin from Terminal (interrupted at byte {kept})")
    receiver.answer("y")
    assert receiver.wait() == 0, receiver.describe()
    assert sender.wait() == 0, sender.describe()
    size = path.stat().st_size
    assert receiver.values("resuming") == [f"{out / path.name} at byte {kept}"]
    assert receiver.values("received") == [f"{out / path.name} {size} sha256 {digest}"]
    assert sender.values("sent") == [f"{path.name} {size} sha256 {digest}"]
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # part and resume point gone
