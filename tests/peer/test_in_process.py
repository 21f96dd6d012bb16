"""The peer in process: tallow.peer.crypto agreement and refusals; the missing-extra message."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from tallow.peer.crypto import CHANNEL_LABEL, Chunk, Handshake, SecureFrames, SecurityError, Session
from tallow.peer.errors import PeerError, SecurityFailure
from tallow.peer.protocol import (
    TEXT_MAX_BYTES,
    ChainHash,
    check_offer,
    offered_names,
    safe_name,
    safe_path,
    safe_segment,
)
from tallow.peer.transfer import plan_offers


def agree() -> tuple[Session, Session]:
    initiator, responder = Handshake(True, "id-i", "id-r"), Handshake(False, "id-r", "id-i")
    hs2, none = responder.receive(initiator.start())
    assert none is None and hs2 is not None
    hs3, session_i = initiator.receive(hs2)
    assert hs3 is not None and session_i is not None
    reply, session_r = responder.receive(hs3)
    assert reply is None and session_r is not None
    return session_i, session_r


def test_both_sides_derive_the_same_words_and_opposite_keys() -> None:
    session_i, session_r = agree()
    assert session_i.words == session_r.words and len(session_i.words) == 4
    assert session_i.transcript == session_r.transcript
    assert session_i.own("keyI2R", "keyR2I") == session_r.peers("keyI2R", "keyR2I")
    assert session_i.own("keyI2R", "keyR2I") != session_i.peers("keyI2R", "keyR2I")
    assert agree()[0].words != session_i.words or agree()[0].keys != session_i.keys


def test_frames_confirm_then_carry_control_and_chunks() -> None:
    session_i, session_r = agree()
    i_side = SecureFrames(session_i, CHANNEL_LABEL, 1)
    r_side = SecureFrames(session_r, CHANNEL_LABEL, 1)
    assert r_side.open(i_side.confirmation()) is None and r_side.confirmed
    assert i_side.open(r_side.confirmation()) is None and i_side.confirmed
    assert r_side.open(i_side.control({"t": "offer", "name": "é"})) == {"t": "offer", "name": "é"}
    assert r_side.open(i_side.chunk(7, b"data")) == Chunk(7, b"data")


def test_replay_reorder_other_channel_and_second_start_are_refused() -> None:
    session_i, session_r = agree()
    i_side = SecureFrames(session_i, CHANNEL_LABEL, 1)
    r_side = SecureFrames(session_r, CHANNEL_LABEL, 1)
    confirm = i_side.confirmation()
    r_side.open(confirm)
    with pytest.raises(SecurityError, match="authentication"):
        r_side.open(confirm)  # replayed
    with pytest.raises(SecurityError, match="already in use"):
        SecureFrames(session_r, CHANNEL_LABEL, 3)  # a second channel never gets these keys
    session_i2, session_r2 = agree()
    other = SecureFrames(session_r2, CHANNEL_LABEL, 3)  # same keys' frame on another stream id
    with pytest.raises(SecurityError):
        other.open(SecureFrames(session_i2, CHANNEL_LABEL, 1).confirmation())


def test_data_before_confirmation_and_a_wrong_tag_are_refused() -> None:
    session_i, session_r = agree()
    with pytest.raises(SecurityError, match="before confirming"):
        SecureFrames(session_r, CHANNEL_LABEL, 1).open(
            SecureFrames(session_i, CHANNEL_LABEL, 1).chunk(1, b"x")
        )
    session_i, session_r = agree()
    forged = SecureFrames(session_i, CHANNEL_LABEL, 1).control(
        {"t": "confirm", "tag": "A" * 43 + "="}
    )
    with pytest.raises(SecurityError, match="confirmation failed"):
        SecureFrames(session_r, CHANNEL_LABEL, 1).open(forged)


def test_handshake_refuses_a_broken_commitment_and_bad_values() -> None:
    initiator, responder = Handshake(True, "i", "r"), Handshake(False, "r", "i")
    hs2, _ = responder.receive(initiator.start())
    assert hs2 is not None
    hs3, _ = initiator.receive(hs2)
    assert hs3 is not None
    with pytest.raises(SecurityError, match="commitment"):
        responder.receive({**hs3, "n": "A" * 43 + "="})
    with pytest.raises(SecurityError, match="unexpected"):
        Handshake(False, "r", "i").receive({"t": "hs3", "n": "A" * 44})
    with pytest.raises(SecurityError, match="wrong length"):
        Handshake(False, "r", "i").receive({"t": "hs1", "x": "AAAA", "k": "", "c": ""})


def test_without_the_peer_extra_send_says_what_to_install() -> None:
    # As in the server's zipapp or an install without the extra: aiortc cannot be imported.
    hide = "import sys; sys.modules['aiortc'] = None; from tallow.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide, "send", "somefile"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "pip install -e '.[peer]'" in result.stderr and "aiortc" in result.stderr


def test_offers_are_checked_like_the_web_app_checks_them() -> None:
    good = {"t": "offer", "id": 1, "tid": "0" * 32, "kind": "files",
            "files": [{"name": "a", "size": 3}]}  # fmt: skip
    check_offer(good)
    for bad in (
        {"id": -1}, {"id": 2**32}, {"id": True}, {"tid": "xyz"}, {"kind": "zip"}, {"files": []},
        {"files": [{"name": "a", "size": -1}]}, {"files": [{"name": "a", "size": 2**53}]},
        {"files": [{"name": 1, "size": 1}]}, {"files": [{"name": "a", "size": 1}] * 257},
        {"kind": "text", "files": [{"name": "text.txt", "size": TEXT_MAX_BYTES + 1}]},
    ):  # fmt: skip
        with pytest.raises(SecurityFailure):
            check_offer({**good, **bad})


def test_names_from_a_peer_cannot_escape_or_disguise() -> None:
    assert safe_path("../../etc/passwd") == "file/file/etc/passwd"
    assert safe_path("/a//./b") == "a/b"
    assert safe_segment("invoice_\u202efdp.exe") == "invoice_fdp.exe"
    assert safe_segment('a\\b:c*?"<>|') == "abc"
    assert safe_segment("..") == "file"
    assert offered_names("files", [{"name": "dir/x.txt", "size": 1}]) == ["x.txt"]
    assert safe_name("  \u200bAda\x07 ") == "Ada" and safe_name("") == "Someone"


def test_chain_hash_is_the_documented_chain() -> None:
    chain = ChainHash()
    assert chain.hexdigest() == hashlib.sha256(b"tallow/v1 file").hexdigest()
    chain.update(b"abc")
    start = hashlib.sha256(b"tallow/v1 file").digest()
    assert chain.hexdigest() == hashlib.sha256(start + hashlib.sha256(b"abc").digest()).hexdigest()


def test_paths_become_the_web_apps_offers(tmp_path) -> None:
    (tmp_path / "album" / "sub").mkdir(parents=True)
    (tmp_path / "album" / "sub" / "b.txt").write_bytes(b"bb")
    (tmp_path / "album" / "a.txt").write_bytes(b"a")
    (tmp_path / "one.bin").write_bytes(b"1")
    files, folder, text = plan_offers([tmp_path / "album", tmp_path / "one.bin"], "hi")
    assert (files.kind, [f.name for f in files.files]) == ("files", ["one.bin"])
    assert folder.kind == "folder" and folder.label == "album"
    assert [(f.name, f.size) for f in folder.files] == [("album/a.txt", 1), ("album/sub/b.txt", 2)]
    assert (text.kind, text.files[0].name, text.files[0].open().read()) == (
        "text",
        "text.txt",
        b"hi",
    )
    with pytest.raises(PeerError, match="no such file"):
        plan_offers([tmp_path / "missing"], None)
    with pytest.raises(PeerError, match="1 MiB"):
        plan_offers([], "x" * (TEXT_MAX_BYTES + 1))
