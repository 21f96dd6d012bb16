"""The server's RFC 6455 codec, checked against wsproto's client framing (an independent
implementation): frames split anywhere, fragments with control frames between them, limits
decided from the header, close codes, UTF-8, and every framing error with its close code."""

from __future__ import annotations

import os

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from tallow.signaling.codec import (
    CLOSE,
    PING,
    PONG,
    Control,
    Decoder,
    FrameError,
    close_frame,
    text_frame,
    unmask,
)

SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 300000]


def client_frames() -> FrameProtocol:
    return FrameProtocol(client=True, extensions=[])


def masked(first: int, payload: bytes) -> bytes:
    """One client frame with any first byte (opcode, FIN and RSV bits as given)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return bytes([first]) + length + mask + unmask(payload, mask)


@pytest.mark.parametrize("size", SIZES)
def test_text_frame_matches_wsproto(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte characters: length is in bytes
    reference = FrameProtocol(client=False, extensions=[]).send_data(text, True)
    assert text_frame(text.encode()) == reference


@pytest.mark.parametrize("size", SIZES)
def test_decodes_what_a_client_library_sends(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    data = client_frames().send_data(text, True) + client_frames().send_data(b"\x00\xff", True)
    assert Decoder(1 << 20).feed(data) == [text, b"\x00\xff"]


def test_frames_split_at_every_byte_come_out_whole_and_in_order() -> None:
    frames = client_frames()
    data = frames.send_data("héllo" * 30, True) + frames.ping(b"p") + frames.send_data("x", True)
    decoder = Decoder(1 << 20)
    messages = [message for byte in data for message in decoder.feed(bytes([byte]))]
    assert messages[0] == "héllo" * 30 and messages[2] == "x"
    assert isinstance(messages[1], Control) and messages[1].opcode == PING
    assert messages[1].payload == b"p"


def test_fragments_with_control_frames_between_them_make_one_message() -> None:
    frames = client_frames()
    text = "ü" * 50  # the fragment boundary falls inside a two-byte character
    data = text.encode()
    wire = (
        masked(0x01, data[:33])  # TEXT, not final
        + frames.ping(b"1")
        + masked(0x00, data[33:71])  # CONTINUATION
        + frames.pong(b"2")
        + masked(0x80, data[71:])  # final CONTINUATION
    )
    messages = Decoder(1 << 20).feed(wire)
    kinds = [m.opcode if isinstance(m, Control) else m for m in messages]
    assert kinds == [PING, PONG, text]


def test_a_message_too_big_is_refused_from_its_header_before_any_payload() -> None:
    decoder = Decoder(1000)
    header = bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big")  # no payload follows
    with pytest.raises(FrameError) as refused:
        decoder.feed(header)
    assert refused.value.code == 1009
    assert Decoder(1000).feed(masked(0x81, b"x" * 1000)) == ["x" * 1000]  # the limit itself


def test_fragments_count_together_against_the_limit() -> None:
    decoder = Decoder(1000)
    assert decoder.feed(masked(0x01, b"a" * 600)) == []
    with pytest.raises(FrameError) as refused:
        decoder.feed(masked(0x80, b"a" * 401)[:4])  # only the header has arrived
    assert refused.value.code == 1009


def test_invalid_utf8_in_text_is_1007_and_binary_is_not_checked() -> None:
    with pytest.raises(FrameError) as refused:
        Decoder(100).feed(masked(0x81, b'{"x":"\xff"}'))
    assert refused.value.code == 1007
    assert Decoder(100).feed(masked(0x82, b"\xff")) == [b"\xff"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"", 1005), (b"\x03\xe8", 1000), (b"\x03\xe9bye", 1001), (b"\x0f\xa0", 4000)],
)
def test_close_frames_carry_their_code(payload: bytes, code: int) -> None:
    (close,) = Decoder(100).feed(masked(0x88, payload))
    assert isinstance(close, Control) and close.opcode == CLOSE and close.code == code


BROKEN = {
    "unmasked": (bytes([0x81, 2]) + b"{}", 1002),
    "reserved bit": (masked(0xC1, b"{}"), 1002),
    "reserved opcode 3": (masked(0x83, b"x"), 1002),
    "reserved opcode 0xB": (masked(0x8B, b"x"), 1002),
    "fragmented ping": (masked(0x09, b"x"), 1002),
    "control payload over 125 bytes": (masked(0x89, b"x" * 126), 1002),
    "continuation without a start": (masked(0x80, b"abc"), 1002),
    "text inside a fragmented message": (masked(0x01, b"a") + masked(0x81, b"b"), 1002),
    "close with 1 byte": (masked(0x88, b"\x03"), 1002),
    "close code 999": (masked(0x88, b"\x03\xe7"), 1002),
    "close code 1005": (masked(0x88, b"\x03\xed"), 1002),
    "close code 5000": (masked(0x88, b"\x13\x88"), 1002),
    "close reason not UTF-8": (masked(0x88, b"\x03\xe8\xff"), 1007),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_frames_raise_the_close_code_rfc_6455_asks_for(case: str) -> None:
    data, code = BROKEN[case]
    with pytest.raises(FrameError) as refused:
        Decoder(1000).feed(data)
    assert refused.value.code == code


def test_server_close_frames() -> None:
    assert close_frame(1005) == b"\x88\x00"  # "no status" is an empty close, never sent as a code
    assert close_frame(1013, "busy") == b"\x88\x06\x03\xf5busy"
    reference = FrameProtocol(client=False, extensions=[])
    assert close_frame(1001, "bye") == reference._serialize_frame(Opcode.CLOSE, b"\x03\xe9bye")


@pytest.mark.parametrize("size", [1, 3, 4, 5, 1000, 4097])
def test_unmask_is_the_rfc_xor(size: int) -> None:
    data, mask = os.urandom(size), os.urandom(4)
    assert unmask(data, mask) == bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def test_a_long_close_reason_is_cut_on_a_character_boundary() -> None:
    frame = close_frame(1000, "é" * 100)
    frame[4:].decode()  # still UTF-8
    assert len(frame) <= 2 + 125
