"""Malformed signaling input, fuzzed with hypothesis against one live server over real sockets.

Each example opens its own connection, sends its frames, then a marked ping (wire.judge): the
server must answer with documented error codes and the pong, or close with a documented code
(or, for a broken WebSocket frame, fail the connection as RFC 6455 says). Two bystanders keep a
ping and a signal exchange going the whole time on the same server and must notice nothing.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallow.signaling import protocol as p
from tallow.signaling.session import HANDLERS
from tests.hostile.conftest import Bystanders, tried
from tests.hostile.wire import RawClient, Verdict, judge
from tests.raw_websocket import BINARY, CLOSE, PING, PONG, TEXT, frame_header

LIMIT = 8192  # TALLOW_MAX_MESSAGE_BYTES of the fuzzed server: small, so limits are reachable
FUZZ = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Text that breaks naive code: direction overrides, joiners, combining marks, full-width letters
# that look like ASCII, NUL, line breaks, emoji, and letters whose upper case changes length.
ODD = "\u202e\u200d\u0301\uff21\uff10\x00\n\r\t\U0001f4a9ßİıﬁ\ufeff\ufffd<>\"'\\/-_"
odd_text = st.text(alphabet=st.sampled_from(ODD) | st.characters(exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)
room_codes = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True) | odd_text | json_values
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(sorted(HANDLERS)) | json_values,
        "room": room_codes,
        "name": odd_text | json_values,
        "meta": st.dictionaries(odd_text, json_values, max_size=3) | json_values,
        "to": odd_text | json_values,
        "data": json_values,
        "id": st.integers() | odd_text | json_values,
    },
)


def nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def texts(draw: st.DrawFn) -> str:
    """One text frame: a message of the right shape with wrong parts, or any kind of junk."""
    kind = draw(st.sampled_from(["message", "value", "junk", "truncated", "deep", "huge"]))
    if kind == "message":
        return json.dumps(draw(messages), ensure_ascii=draw(st.booleans()))
    if kind == "value":
        return json.dumps(draw(json_values), ensure_ascii=False)
    if kind == "junk":
        return draw(odd_text)
    if kind == "truncated":
        whole = json.dumps(draw(messages))
        return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        where = draw(st.sampled_from(["data", "meta", "id", "type"]))
        base = {"type": draw(st.sampled_from(["signal", "broadcast", "join"])), "room": "deep"}
        text = json.dumps({**base, "to": "nobody", where: "@"})
        return text.replace('"@"', nested(depth) if where != "meta" else f'{{"a":{nested(depth)}}}')
    # Huge: around the limit, past it, and past four times it (cut at once with 1009).
    size = draw(st.sampled_from([LIMIT - 40, LIMIT + 1, 4 * LIMIT + 1, 64 * LIMIT]))
    return json.dumps({"type": "ping", "pad": "é" * (size // 2)}, ensure_ascii=False)


@pytest.fixture(scope="module")
def fuzzed(module_server):
    server = module_server(
        env={
            "TALLOW_MAX_MESSAGE_BYTES": str(LIMIT),
            "TALLOW_RESUME_SECONDS": "1",
            # One connection per example from one address: the per-address limit has its own test.
            "TALLOW_MAX_CONNECTIONS_PER_IP": "0",
        }
    )
    with Bystanders(server.port) as bystanders:
        yield server
        bystanders.check()
    assert server.process.poll() is None
    assert '"level":"error"' not in server.log() and "Traceback" not in server.log()


def run_case(port: int, frames: list[tuple[int, bytes, bool]], *, may_fail: bool) -> Verdict:
    """Send raw frames on a fresh connection; what the server made of them."""
    client = RawClient.connect(port)
    try:
        for opcode, payload, fin in frames:
            try:
                client.send_frame(opcode, payload, fin)
            except OSError:
                break  # the server closed already: judge reads why
        try:
            return judge(client)
        except AssertionError as error:
            # RFC 6455 7.1.7: on a broken frame the endpoint fails the connection (closes TCP).
            if may_fail and "without a WebSocket close frame" in str(error):
                return Verdict(close_code=None)
            raise
    finally:
        client.close()


@FUZZ
@given(frames=st.lists(texts(), min_size=1, max_size=4))
def test_malformed_json_and_messages(fuzzed, frames: list[str]) -> None:
    tried("json text frames", len(frames))
    verdict = run_case(fuzzed.port, [(TEXT, f.encode(), True) for f in frames], may_fail=False)
    assert verdict.alive or verdict.close_code in (p.CLOSE_TOO_BIG,), verdict


@FUZZ
@given(payload=st.binary(min_size=1, max_size=200), cut=st.integers(0, 199))
def test_invalid_utf8_in_text_frames(fuzzed, payload: bytes, cut: int) -> None:
    frame = b'{"type":"ping","x":"' + payload + b'"}'
    try:
        frame.decode()
        frame = frame[: cut % len(frame)] + b"\xc3\x28" + frame[cut % len(frame) :]
    except UnicodeDecodeError:
        pass
    tried("invalid UTF-8 text frames")
    verdict = run_case(fuzzed.port, [(TEXT, frame, True)], may_fail=True)
    assert not verdict.alive and not verdict.errors, verdict


@FUZZ
@given(
    pieces=st.integers(2, 6),
    controls=st.lists(st.sampled_from([PING, PONG]), max_size=5),
    message=st.sampled_from(['{"type":"ping"}', '{"type":"create","id":"f"}', '{"type":1}']),
)
def test_fragmented_messages_with_interleaved_control_frames(
    fuzzed, pieces: int, controls: list[int], message: str
) -> None:
    """Legal per RFC 6455: fragments with pings and pongs between them form one message."""
    data = message.encode()
    step = max(1, -(-len(data) // pieces))
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    frames = []
    for index, chunk in enumerate(chunks):
        frames.append((TEXT if index == 0 else 0, chunk, index == len(chunks) - 1))
        if index < len(controls) and index < len(chunks) - 1:
            frames.append((controls[index], b"ctl", True))
    tried("fragmented messages")
    verdict = run_case(fuzzed.port, frames, may_fail=False)
    assert verdict.alive, verdict
    assert verdict.errors == ([p.BAD_MESSAGE] if message == '{"type":1}' else []), verdict


BROKEN_FRAMES = {
    "fragmented ping": [(PING, b"x", False)],
    "control payload over 125 bytes": [(PING, b"x" * 126, True)],
    "continuation without a start": [(0, b"abc", True)],
    "text inside a fragmented message": [(TEXT, b'{"ty', False), (TEXT, b'pe":1}', True)],
    "reserved opcode 3": [(3, b"x", True)],
    "reserved opcode 0xB": [(0xB, b"x", True)],
    "close code 999": [(CLOSE, b"\x03\xe7", True)],
    "close with 1 byte": [(CLOSE, b"\x03", True)],
    "close reason not UTF-8": [(CLOSE, b"\x03\xe8\xff", True)],
}


@FUZZ
@given(
    broken=st.sampled_from(sorted(BROKEN_FRAMES)),
    before=st.lists(st.sampled_from(['{"type":"ping"}', "[]", "{"]), max_size=2),
)
def test_broken_websocket_frames_end_only_that_connection(
    fuzzed, broken: str, before: list[str]
) -> None:
    frames = [(TEXT, text.encode(), True) for text in before] + BROKEN_FRAMES[broken]
    tried("broken WebSocket frames")
    verdict = run_case(fuzzed.port, frames, may_fail=True)
    assert not verdict.alive, verdict


def test_unmasked_and_reserved_bit_frames_end_only_that_connection(fuzzed) -> None:
    for raw in (bytes([0x81, 2]) + b"{}", bytes([0xC1, 0x82]) + b"\0\0\0\0{}"):
        client = RawClient.connect(fuzzed.port)
        try:
            client.sock.sendall(raw)
            tried("broken WebSocket frames")
            try:
                verdict = judge(client)
                assert verdict.close_code is not None and not verdict.alive, verdict
            except AssertionError as error:
                assert "without a WebSocket close frame" in str(error)
        finally:
            client.close()


@FUZZ
@given(payload=st.binary(max_size=300))
def test_binary_frames_get_binary_unsupported(fuzzed, payload: bytes) -> None:
    tried("binary frames")
    verdict = run_case(fuzzed.port, [(BINARY, payload, True)], may_fail=False)
    assert verdict.alive and verdict.errors == [p.BINARY_UNSUPPORTED], verdict


@pytest.mark.parametrize("fragments", [1, 256])
def test_a_16_mib_message_is_cut_with_1009(fuzzed, fragments: int) -> None:
    """Sent in full (not just announced), in one frame or in 64 KiB fragments."""
    client = RawClient.connect(fuzzed.port)
    total = 16 << 20
    try:
        piece = total // fragments
        for index in range(fragments):
            last = index == fragments - 1
            try:
                client.sock.sendall(
                    frame_header(TEXT if index == 0 else 0, piece, last) + b"\0" * (4 + piece)
                )
            except OSError:
                break  # cut while we were still sending: that is the point
        tried("16 MiB messages")
        assert judge(client).close_code == p.CLOSE_TOO_BIG
    finally:
        client.close()


def test_client_data_nested_too_deep_to_relay_is_bad_message(fuzzed) -> None:
    """orjson reads 1024 levels but writes only 254: a relayed frame must not become `internal`,
    nor may a peer's meta make the room's later `joined` replies fail for everyone else."""
    alice, bob = RawClient.connect(fuzzed.port), RawClient.connect(fuzzed.port)
    try:
        for depth in (200, 251, 252, 253, 300, 1000):
            meta = f'{{"a":{nested(depth)}}}'
            alice.send_frame(TEXT, b'{"type":"join","room":"deep-meta","meta":%s}' % meta.encode())
            reply = alice.recv_json()
            tried("deeply nested messages")
            if reply["type"] == "joined":
                joined = bob.request({"type": "join", "room": "deep-meta"})
                assert joined["type"] == "joined", (depth, joined)
                assert alice.recv_json()["type"] == "peer-joined"
                assert bob.request({"type": "leave"})["type"] == "left"
                assert alice.recv_json()["type"] == "peer-left"
                assert alice.request({"type": "leave"})["type"] == "left"
            else:
                assert reply["code"] == p.BAD_MESSAGE, (depth, reply)
        assert bob.request({"type": "join", "room": "deep-data"})["type"] == "joined"
        for kind in ("signal", "broadcast"):
            frame = f'{{"type":"{kind}","to":"{bob.peer}","data":{nested(300)}}}'
            bob.send_frame(TEXT, frame.encode())
            tried("deeply nested messages")
            assert bob.recv_json()["code"] == p.BAD_MESSAGE
    finally:
        alice.shut(), bob.shut()
