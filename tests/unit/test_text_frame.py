"""The direct path writes relayed text frames itself: byte for byte what wsproto would write."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from tallow.http.direct import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 300000])
def test_text_frame_matches_wsproto(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte characters: length is in bytes
    reference = FrameProtocol(client=False, extensions=[]).send_data(text, True)
    assert text_frame(text.encode()) == reference
