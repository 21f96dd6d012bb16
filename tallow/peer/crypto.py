"""The web app's end-to-end encryption in Python: handshake, key schedule, frames (docs/webapp.md).

The one Python implementation of it: the command-line peer uses it, and the browser interop test
recomputes a real browser handshake with it. Only `cryptography` primitives, no hand-made ones:

- handshake: ML-KEM-768 + X25519, three messages (hs1, hs2, hs3) with a commitment to the
  initiator's nonce, so a man in the middle cannot steer both sides to the same words;
- key schedule: HKDF-SHA256 over ss_kem || ss_x, salted with the transcript hash;
- frames: AES-256-GCM, nonce = 4 zero bytes || 64-bit counter per direction, associated data
  naming the channel (label, SCTP stream id) and the direction. The counters belong to the
  session keys, and a session starts on one channel once, so no (key, nonce) pair repeats.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from collections.abc import Iterable
from functools import cache
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TRANSCRIPT_LABEL = "tallow/v1 transcript"
# HKDF output name -> (info label, bytes), exactly as the web app derives them.
SCHEDULE = {
    "keyI2R": ("tallow/v1 key initiator to responder", 32),
    "keyR2I": ("tallow/v1 key responder to initiator", 32),
    "confirmI": ("tallow/v1 confirm initiator", 32),
    "confirmR": ("tallow/v1 confirm responder", 32),
    "sas": ("tallow/v1 sas", 6),
}
# The public values in transcript order (after the label and the two peer ids).
TRANSCRIPT_FIELDS = ("xI", "ekI", "commitI", "xR", "ct", "nonceR", "nonceI")
SIZES = {"x": 32, "ek": 1184, "ct": 1088, "nonce": 32, "digest": 32}
SAS_WORDS = 4

CHANNEL_LABEL = "tallow"
CONTROL = 1
CHUNK = 2
TAG_BYTES = 16
MAX_FRAME = 64 * 1024
CHUNK_BYTES = MAX_FRAME - TAG_BYTES - 5  # type byte and 4-byte file id


class SecurityError(Exception):
    """The peer broke the protocol: bad handshake values, a failed tag, a reused session."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any, size: int) -> bytes:
    """Standard base64 of exactly `size` bytes, or SecurityError."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise SecurityError("a handshake value is not base64") from None
    if len(data) != size:
        raise SecurityError("a handshake value has the wrong length")
    return data


def length_prefixed(parts: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def transcript_hash(initiator_id: str, responder_id: str, fields: dict[str, bytes]) -> bytes:
    parts = [TRANSCRIPT_LABEL.encode(), initiator_id.encode(), responder_id.encode()]
    return hashlib.sha256(length_prefixed(parts + [fields[f] for f in TRANSCRIPT_FIELDS])).digest()


def key_schedule(ikm: bytes, transcript: bytes) -> dict[str, bytes]:
    """Every HKDF output of the schedule, by name (SCHEDULE)."""
    return {
        name: HKDF(hashes.SHA256(), size, transcript, label.encode()).derive(ikm)
        for name, (label, size) in SCHEDULE.items()
    }


@cache
def _wordlist() -> list[str]:
    # The BIP-39 English list as the `mnemonic` package ships it (the same list as the web app's).
    from mnemonic import Mnemonic

    return Mnemonic("english").wordlist


def sas_words(sas: bytes) -> list[str]:
    """Four words from the first 44 bits of `sas`, 11 bits a word, most significant first."""
    value = int.from_bytes(sas[:6], "big")
    return [_wordlist()[(value >> (48 - 11 * i)) & 0x7FF] for i in range(1, SAS_WORDS + 1)]


def associated_data(label: str, stream_id: int, direction: str) -> bytes:
    """The AAD of every frame: the channel it was sealed for and its direction (i2r or r2i)."""
    return f"tallow/v1 frame {label} {stream_id} {direction}".encode()


def frame_nonce(counter: int) -> bytes:
    return bytes(4) + struct.pack(">Q", counter)


@attrs.define(eq=False)
class Session:
    """What one handshake agreed: keys, words, and the nonce counters that belong to the keys."""

    initiator: bool
    transcript: bytes
    keys: dict[str, bytes]
    started: bool = False
    send_counter: int = 0
    recv_counter: int = 0

    @property
    def words(self) -> list[str]:
        return sas_words(self.keys["sas"])

    def own(self, i: str, r: str) -> bytes:
        """This side's key of a pair (initiator's name, responder's name)."""
        return self.keys[i if self.initiator else r]

    def peers(self, i: str, r: str) -> bytes:
        return self.keys[r if self.initiator else i]

    @property
    def confirm_tag(self) -> bytes:
        return hmac.digest(self.own("confirmI", "confirmR"), self.transcript, "sha256")

    def check_confirm(self, tag: bytes) -> bool:
        expected = hmac.digest(self.peers("confirmI", "confirmR"), self.transcript, "sha256")
        return hmac.compare_digest(expected, tag)


def _derive(initiator: bool, ids: tuple[str, str], fields: dict[str, bytes], ikm: bytes) -> Session:
    transcript = transcript_hash(*ids, fields)
    return Session(initiator, transcript, key_schedule(ikm, transcript))


class Handshake:
    """One side of the three-message handshake with one peer (the later joiner initiates).

    The initiator calls `start()` and sends its result; both feed the other's messages to
    `receive()`, which returns (reply or None, Session or None); bad input raises SecurityError.
    """

    def __init__(self, initiator: bool, self_id: str, peer_id: str) -> None:
        self.initiator = initiator
        self.ids = (self_id, peer_id) if initiator else (peer_id, self_id)
        self.step = "start" if initiator else "hs1"
        self.fields: dict[str, bytes] = {}
        self._x = X25519PrivateKey.generate()
        self._nonce = os.urandom(SIZES["nonce"])
        self._kem: MLKEM768PrivateKey | None = None
        self._ikm = b""

    def start(self) -> dict[str, str]:
        self._expect("start")
        self._kem = MLKEM768PrivateKey.from_seed_bytes(os.urandom(64))
        self.fields = {
            "xI": self._x.public_key().public_bytes_raw(),
            "ekI": self._kem.public_key().public_bytes_raw(),
            "commitI": hashlib.sha256(self._nonce).digest(),
        }
        self.step = "hs2"
        f = self.fields
        return {"t": "hs1", "x": b64(f["xI"]), "k": b64(f["ekI"]), "c": b64(f["commitI"])}

    def receive(self, message: dict[str, Any]) -> tuple[dict[str, str] | None, Session | None]:
        kind = message.get("t")
        self._expect(kind)
        try:
            if kind == "hs1":
                return self._on_hs1(message), None
            if kind == "hs2":
                return self._on_hs2(message)
            return None, self._on_hs3(message)
        except ValueError as error:  # a public key or ciphertext `cryptography` refuses
            raise SecurityError(f"bad handshake value: {error}") from None

    def _on_hs1(self, message: dict[str, Any]) -> dict[str, str]:
        x_i = unb64(message.get("x"), SIZES["x"])
        ek_i = unb64(message.get("k"), SIZES["ek"])
        commit = unb64(message.get("c"), SIZES["digest"])
        ss_kem, ct = MLKEM768PublicKey.from_public_bytes(ek_i).encapsulate()
        ss_x = self._x.exchange(X25519PublicKey.from_public_bytes(x_i))
        x_r = self._x.public_key().public_bytes_raw()
        self.fields = {"xI": x_i, "ekI": ek_i, "commitI": commit, "xR": x_r, "ct": ct}
        self.fields["nonceR"] = self._nonce
        self._ikm = ss_kem + ss_x
        self.step = "hs3"
        return {"t": "hs2", "x": b64(x_r), "ct": b64(ct), "n": b64(self._nonce)}

    def _on_hs2(self, message: dict[str, Any]) -> tuple[dict[str, str], Session]:
        assert self._kem is not None
        x_r = unb64(message.get("x"), SIZES["x"])
        ct = unb64(message.get("ct"), SIZES["ct"])
        self.fields.update(xR=x_r, ct=ct, nonceR=unb64(message.get("n"), SIZES["nonce"]))
        self.fields["nonceI"] = self._nonce
        ikm = self._kem.decapsulate(ct) + self._x.exchange(X25519PublicKey.from_public_bytes(x_r))
        self._kem = None
        self.step = "done"
        return {"t": "hs3", "n": b64(self._nonce)}, _derive(True, self.ids, self.fields, ikm)

    def _on_hs3(self, message: dict[str, Any]) -> Session:
        nonce_i = unb64(message.get("n"), SIZES["nonce"])
        if not hmac.compare_digest(hashlib.sha256(nonce_i).digest(), self.fields["commitI"]):
            raise SecurityError("the peer's nonce does not match its commitment")
        self.fields["nonceI"] = nonce_i
        self.step = "done"
        return _derive(False, self.ids, self.fields, self._ikm)

    def _expect(self, kind: Any) -> None:
        if kind != self.step:
            raise SecurityError(f"unexpected handshake message {kind} (waiting for {self.step})")


@attrs.frozen
class Chunk:
    file_id: int
    data: bytes


class SecureFrames:
    """Seals and opens the frames of one session on its one data channel.

    Starting takes the session (once: a second channel must never reuse its keys), sends nothing
    itself: the caller sends `confirmation()` first. The peer's frame 0 must be its confirmation;
    `open()` returns the control messages and chunks after it, and raises SecurityError otherwise.
    """

    def __init__(self, session: Session, label: str, stream_id: int) -> None:
        if session.started:
            raise SecurityError("these session keys are already in use on another channel")
        session.started = True
        self.session = session
        mine, theirs = ("i2r", "r2i") if session.initiator else ("r2i", "i2r")
        self.send_aad = associated_data(label, stream_id, mine)
        self.recv_aad = associated_data(label, stream_id, theirs)
        self._send = AESGCM(session.own("keyI2R", "keyR2I"))
        self._recv = AESGCM(session.peers("keyI2R", "keyR2I"))
        self.confirmed = False

    def confirmation(self) -> bytes:
        return self.control({"t": "confirm", "tag": b64(self.session.confirm_tag)})

    def control(self, message: dict[str, Any]) -> bytes:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        return self._seal(bytes([CONTROL]) + body)

    def chunk(self, file_id: int, data: bytes) -> bytes:
        return self._seal(bytes([CHUNK]) + struct.pack(">I", file_id) + data)

    def _seal(self, plaintext: bytes) -> bytes:
        counter = self.session.send_counter
        self.session.send_counter += 1
        return self._send.encrypt(frame_nonce(counter), plaintext, self.send_aad)

    def open(self, frame: bytes) -> dict[str, Any] | Chunk | None:
        """A control message or a chunk; None for the peer's (verified) key confirmation."""
        counter = self.session.recv_counter
        self.session.recv_counter += 1
        try:
            plain = self._recv.decrypt(frame_nonce(counter), frame, self.recv_aad)
        except InvalidTag:
            raise SecurityError("a message from the peer failed authentication") from None
        if plain[:1] == bytes([CHUNK]) and len(plain) >= 5:
            if counter == 0:
                raise SecurityError("the peer sent data before confirming its keys")
            return Chunk(struct.unpack(">I", plain[1:5])[0], plain[5:])
        if plain[:1] != bytes([CONTROL]):
            raise SecurityError("unknown frame type")
        try:
            message = json.loads(plain[1:])
        except ValueError:
            raise SecurityError("a control message is not JSON") from None
        if not isinstance(message, dict):
            raise SecurityError("a control message is not an object")
        if counter == 0:
            tag = unb64(message.get("tag"), 32) if message.get("t") == "confirm" else b""
            if not self.session.check_confirm(tag):
                raise SecurityError("key confirmation failed")
            self.confirmed = True
            return None
        return message
