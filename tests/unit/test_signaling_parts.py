"""Pure pieces of signaling: room codes, the token bucket, client addresses, error codes."""

from __future__ import annotations

import ipaddress
import re

import pytest

from harness.processes import ROOT
from tallow.http.clients import client_address
from tallow.signaling import protocol
from tallow.signaling.ratelimit import TokenBucket
from tallow.signaling.rooms import ALPHABET, ENTROPY_BITS, canonical, new_code


def test_room_codes_are_readable_and_carry_60_bits() -> None:
    assert ENTROPY_BITS == 60 and len(ALPHABET) == 32
    assert not set("ILOU") & set(ALPHABET)
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code) for code in codes)
    assert all(canonical(code) == code for code in codes)


def test_room_codes_compare_case_insensitively_and_reject_bad_ones() -> None:
    assert canonical("abc-DEF_1") == "ABC-DEF_1"
    for bad in ("", "a b", "x" * 65, "caf\u00e9", "../x", None, 7, ["a"]):
        assert canonical(bad) is None


def test_token_bucket_bursts_then_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_token_bucket_zero_rate_means_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=1, clock=lambda: 0.0)
    assert all(bucket.take() for _ in range(1000))


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address("203.0.113.9", "1.2.3.4", proxies) == ("203.0.113.9", False)
    assert client_address("10.0.0.2", "198.51.100.7", proxies) == ("198.51.100.7", True)
    # A client's own forged entry sits left of the real one: read right to left.
    assert client_address("10.0.0.2", "6.6.6.6, 198.51.100.7", proxies) == ("198.51.100.7", True)
    assert client_address("10.0.0.2", "198.51.100.7, 10.0.0.9", proxies)[0] == "198.51.100.7"
    assert client_address("10.0.0.2", None, proxies) == ("10.0.0.2", True)
    assert client_address("10.0.0.2", "garbage", ()) == ("10.0.0.2", False)


def test_every_error_and_close_code_is_documented() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in protocol.ERROR_CODES:
        assert f"`{code}`" in doc, code
    for close in (
        protocol.CLOSE_GOING_AWAY,
        protocol.CLOSE_POLICY,
        protocol.CLOSE_TOO_BIG,
        protocol.CLOSE_INTERNAL,
        protocol.CLOSE_TRY_AGAIN,
        protocol.CLOSE_SUPERSEDED,
    ):
        assert str(close) in doc, close


def test_relayed_frames_are_what_encode_writes_for_the_same_message() -> None:
    sender = "Qx_3-k9"  # peer ids are URL-safe base64
    for data in ({"sdp": "v=0\r\n", "n": [1, 2.5, None]}, 'é \u2028 "quoted"', 0, [[[]]]):
        for kind in ("signal", "broadcast"):
            expected = protocol.encode({"type": kind, "from": sender, "data": data})
            assert protocol.relayed(kind, sender, data) == expected
    deep: list[object] = []
    for _ in range(300):  # orjson reads this deep but does not write it
        deep = [deep]
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.relayed("signal", sender, deep)
    assert refused.value.code == protocol.BAD_MESSAGE
