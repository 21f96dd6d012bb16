"""The end-to-end encryption, checked from outside the browser.

- Interop: Python's `cryptography` (FIPS 203 ML-KEM-768, X25519, HKDF, HMAC, AES-GCM) reproduces the
  shared secrets, session keys, key confirmation, verification words and the first encrypted frame
  of a real handshake between two pages, following the key schedule in docs/webapp.md.
- Privacy: every WebSocket frame of a whole transfer is recorded; none carries a key, a secret, the
  file name or any file byte, and each one has the documented shape.

Both read secrets through the test hook that conftest installs before the app starts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from playwright.sync_api import Page, WebSocket

from tests.browser.app import (
    connected_pair,
    create_room,
    hook,
    join_room,
    random_file,
    save_received,
    wait_secure,
)

NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"
WORDLIST = NODE_MODULES / "@scure" / "bip39" / "wordlists" / "english.js"
# The key schedule (docs/webapp.md): HKDF-SHA256 output name -> (info label, bytes).
SCHEDULE = {
    "keyI2R": ("tallow/v1 key initiator to responder", 32),
    "keyR2I": ("tallow/v1 key responder to initiator", 32),
    "confirmI": ("tallow/v1 confirm initiator", 32),
    "confirmR": ("tallow/v1 confirm responder", 32),
    "sas": ("tallow/v1 sas", 6),
}
TRANSCRIPT_FIELDS = ["xI", "ekI", "commitI", "xR", "ct", "nonceR", "nonceI"]


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


def sas_words(sas: bytes) -> list[str]:
    text = WORDLIST.read_text()
    words = re.search(r"`([a-z\n]+)`", text).group(1).split("\n")  # type: ignore[union-attr]
    value = int.from_bytes(sas[:6], "big")
    return [words[(value >> (48 - 11 * i)) & 0x7FF] for i in range(1, 5)]


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
    fields = [b"tallow/v1 transcript", *(i.encode() for i in ids)]
    fields += [f[name] for name in TRANSCRIPT_FIELDS]
    transcript = hashlib.sha256(b"".join(struct.pack(">I", len(x)) + x for x in fields)).digest()
    ikm = ss_kem + ss_x
    for record in (init, resp):
        assert b64(record["derived"]["transcript"]) == transcript

    keys = {
        name: HKDF(hashes.SHA256(), length, transcript, label.encode()).derive(ikm)
        for name, (label, length) in SCHEDULE.items()
    }
    for record in (init, resp):
        assert {name: b64(record["derived"][name]) for name in SCHEDULE} == keys

    # Key confirmation tags and the verification words both pages show.
    assert b64(init["derived"]["confirmTag"]) == hmac.digest(keys["confirmI"], transcript, "sha256")
    assert b64(resp["derived"]["confirmTag"]) == hmac.digest(keys["confirmR"], transcript, "sha256")
    words = sas_words(keys["sas"])
    assert init["sas"] == resp["sas"] == words
    assert alice.get_by_test_id("sas").inner_text() == " ".join(words)
    assert bob.get_by_test_id("sas").inner_text() == " ".join(words)

    # The first data-channel frame each way is the confirmation, sealed with AES-256-GCM under
    # that direction's key and nonce 0 (4 zero bytes || 64-bit counter), with associated data
    # naming the channel (label, SCTP stream id) and the direction.
    nonce0 = bytes(12)
    for page, key, tag, direction in (
        (bob, "keyI2R", init, "i2r"),
        (alice, "keyR2I", resp, "r2i"),
    ):
        (sent,) = hook(page, "h.frames.map(f => ({...f, frame: Array.from(f.frame)}))")
        assert sent["label"] == "tallow"
        aad = f"tallow/v1 frame tallow {sent['stream']} {direction}".encode()
        plain = AESGCM(keys[key]).decrypt(nonce0, bytes(sent["frame"]), aad)
        with pytest.raises(InvalidTag):  # the same frame on another channel is not accepted
            AESGCM(keys[key]).decrypt(
                nonce0, bytes(sent["frame"]), aad.replace(b"tallow ", b"x ", 1)
            )
        body = json.dumps({"t": "confirm", "tag": tag["derived"]["confirmTag"]})
        assert plain == b"\x01" + body.replace(" ", "").encode()


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
