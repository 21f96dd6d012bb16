"""The end-to-end encryption, checked from outside the browser.

- Interop: tallow.peer.crypto (the command-line peer's implementation, on `cryptography`: FIPS 203
  ML-KEM-768, X25519, HKDF, HMAC, AES-GCM) reproduces the shared secrets, session keys, key
  confirmation, verification words and the first encrypted frame of a real handshake between two
  pages, following the key schedule in docs/webapp.md.
- Privacy: every WebSocket frame of a whole transfer is recorded; none carries a key, a secret, the
  file name or any file byte, and each one has the documented shape.

Both read secrets through the test hook that conftest installs before the app starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from playwright.sync_api import Page, WebSocket

from tallow.peer.crypto import (
    SCHEDULE,
    SecureFrames,
    SecurityError,
    Session,
    associated_data,
    key_schedule,
    sas_words,
    transcript_hash,
)
from tests.browser.app import (
    connected_pair,
    create_room,
    hook,
    join_room,
    random_file,
    save_received,
    wait_secure,
)


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def handshake_pair(new_page, server) -> tuple[Page, Page, dict[str, Any], dict[str, Any]]:
    """Two hooked pages in one room; (responder page, initiator page, their handshake records)."""
    alice, bob = new_page(hook=True), new_page(hook=True)
    connected_pair(alice, bob, server.url)
    (responder,) = hook(alice, "h.handshakes")
    (initiator,) = hook(bob, "h.handshakes")  # whoever joins later initiates
    assert (initiator["role"], responder["role"]) == ("initiator", "responder")
    return alice, bob, initiator, responder


def test_python_reproduces_the_browsers_handshake(tallow_server, new_page) -> None:
    alice, bob, init, resp = handshake_pair(new_page, tallow_server)
    assert init["fields"] == resp["fields"]  # both ends saw the same public values
    f = {name: b64(value) for name, value in init["fields"].items()}
    ids = (init["initiatorId"], init["responderId"])
    assert ids == (resp["initiatorId"], resp["responderId"])

    # ML-KEM-768 (FIPS 203): the browser's key pair is the standard one for its seed, and the
    # other browser's ciphertext decapsulates to the same shared secret in `cryptography`.
    kem = MLKEM768PrivateKey.from_seed_bytes(b64(init["secrets"]["kemSeed"]))
    assert kem.public_key().public_bytes_raw() == f["ekI"]
    ss_kem = kem.decapsulate(f["ct"])
    assert ss_kem == b64(init["secrets"]["ssKem"]) == b64(resp["secrets"]["ssKem"])

    # X25519 both ways.
    x_i = X25519PrivateKey.from_private_bytes(b64(init["secrets"]["xPrivate"]))
    x_r = X25519PrivateKey.from_private_bytes(b64(resp["secrets"]["xPrivate"]))
    assert x_i.public_key().public_bytes_raw() == f["xI"]
    assert x_r.public_key().public_bytes_raw() == f["xR"]
    ss_x = x_i.exchange(X25519PublicKey.from_public_bytes(f["xR"]))
    assert ss_x == x_r.exchange(X25519PublicKey.from_public_bytes(f["xI"]))
    assert ss_x == b64(init["secrets"]["ssX"]) == b64(resp["secrets"]["ssX"])

    # The initiator's nonce matches its commitment; the transcript hash covers every public value.
    assert hashlib.sha256(f["nonceI"]).digest() == f["commitI"]
    transcript = transcript_hash(*ids, f)
    ikm = ss_kem + ss_x
    for record in (init, resp):
        assert b64(record["derived"]["transcript"]) == transcript

    keys = key_schedule(ikm, transcript)
    for record in (init, resp):
        assert {name: b64(record["derived"][name]) for name in SCHEDULE} == keys

    # Key confirmation tags and the verification words both pages show.
    sessions = {
        role: Session(role == "initiator", transcript, keys) for role in ("initiator", "responder")
    }
    assert b64(init["derived"]["confirmTag"]) == sessions["initiator"].confirm_tag
    assert b64(resp["derived"]["confirmTag"]) == sessions["responder"].confirm_tag
    words = sas_words(keys["sas"])
    assert init["sas"] == resp["sas"] == words
    assert alice.get_by_test_id("sas").inner_text() == " ".join(words)
    assert bob.get_by_test_id("sas").inner_text() == " ".join(words)

    # The first data-channel frame each way is the confirmation, sealed with AES-256-GCM under
    # that direction's key and nonce 0 (4 zero bytes || 64-bit counter), with associated data
    # naming the channel (label, SCTP stream id) and the direction: the receiving side's
    # SecureFrames opens it and verifies the tag.
    for page, receiver, direction in ((bob, "responder", "i2r"), (alice, "initiator", "r2i")):
        (sent,) = hook(page, "h.frames.map(f => ({...f, frame: Array.from(f.frame)}))")
        assert sent["label"] == "tallow"
        frame = bytes(sent["frame"])
        session = Session(receiver == "initiator", transcript, keys)
        frames = SecureFrames(session, sent["label"], sent["stream"])
        assert frames.recv_aad == associated_data("tallow", sent["stream"], direction)
        assert frames.open(frame) is None and frames.confirmed  # the tag verified
        # The same frame is refused on another channel, and replayed (as frame 1).
        with pytest.raises(SecurityError):
            SecureFrames(Session(session.initiator, transcript, keys), "x", sent["stream"]).open(
                frame
            )
        with pytest.raises(SecurityError):
            frames.open(frame)


SIGNAL_SHAPES = {
    "sdp": {"t", "sdp"},
    "ice": {"t", "c"},
    "hs1": {"t", "x", "k", "c"},
    "hs2": {"t", "x", "ct", "n"},
    "hs3": {"t", "n"},
}
SERVER_TYPES = {"welcome", "created", "joined", "peer-joined", "peer-left", "signal", "pong"}
CLIENT_TYPES = {"create", "join", "signal", "ping", "leave"}


def encodings(secret: bytes) -> list[str]:
    return [
        base64.b64encode(secret).decode(),
        secret.hex(),
        base64.urlsafe_b64encode(secret).decode(),
    ]


def file_windows(data: bytes) -> list[str]:
    """Encodings of 48-byte windows of the file at every base64 alignment."""
    found = []
    for start in range(0, len(data) - 64, len(data) // 16):
        for shift in range(3):
            window = data[start + shift : start + shift + 48]
            found += [base64.b64encode(window).decode()[4:-4], window.hex()]
    return found


def test_signaling_sees_no_key_plaintext_or_file_byte(tallow_server, new_page, tmp_path) -> None:
    frames: list[tuple[str, str | bytes]] = []

    def record(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: frames.append(("sent", payload)))
        ws.on("framereceived", lambda payload: frames.append(("received", payload)))

    alice, bob = new_page(hook=True), new_page(hook=True)
    for page in (alice, bob):
        page.on("websocket", record)
    join_room(bob, create_room(alice, tallow_server.url))
    wait_secure(alice, 1)
    wait_secure(bob, 1)
    path, digest = random_file(tmp_path, "quarterly-secret-plans.pdf", 1024 * 1024)
    alice.get_by_test_id("file-input").set_input_files(path)
    assert save_received(bob, path.name) == (path.name, digest)
    bob.get_by_test_id("file-input").set_input_files(path)  # and back the other way
    assert save_received(alice, path.name) == (path.name, digest)

    # Every frame is a JSON object of a documented type and shape.
    messages = []
    for direction, payload in frames:
        assert isinstance(payload, str), "binary frame on the signaling socket"
        message = json.loads(payload)
        assert message["type"] in (CLIENT_TYPES if direction == "sent" else SERVER_TYPES)
        if message["type"] == "signal":
            assert set(message["data"]) == SIGNAL_SHAPES[message["data"]["t"]], message
        messages.append(message)
    kinds = {m["data"]["t"] for m in messages if m["type"] == "signal"}
    assert kinds == set(SIGNAL_SHAPES)  # the whole handshake and negotiation were recorded

    # Positive control: public handshake values are visible in the recording...
    text = "\n".join(payload for _, payload in frames)  # type: ignore[misc]
    records = hook(alice, "h.handshakes") + hook(bob, "h.handshakes")
    for name in ("ekI", "ct", "xI", "xR"):
        assert records[0]["fields"][name] in text
    # ...but no secret or derived key, in any common encoding,
    for record in records:
        for group in ("secrets", "derived"):
            for name, value in record[group].items():
                if name == "transcript":
                    continue  # a hash of public values, never sent either way, but not secret
                for encoded in encodings(b64(value)):
                    assert encoded not in text, f"{group}.{name} leaked"
    # ...nor the file: its name, its digest, any window of its bytes, or its volume.
    data = path.read_bytes()
    assert path.name not in text and "secret-plans" not in text
    assert digest not in text
    assert not [w for w in file_windows(data) if w in text]
    assert len(text) < len(data) / 8, len(text)
