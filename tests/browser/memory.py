"""How much memory a receiving Chromium uses: the test and the benchmark share this.

The receiver runs in its own Chromium (so the sender's memory is not counted); its browser
process is found by a marker switch on its command line, and the resident memory (VmRSS) of
that process and all its descendants (renderers, GPU, network and storage services) is summed
from /proc while a file arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, BrowserType, Page

from harness.procfs import rss_kib, tree, with_argument
from tests.browser.app import finish_receiving, start_receiving
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, STREAM_DOWNLOADS

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.25


def _rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, KeyError):  # a renderer may end while we count
        return rss_kib(pid) * 1024
    return 0


class MarkedChromium:
    """A Chromium of its own whose process tree's resident memory can be summed."""

    def __init__(self, chromium: BrowserType) -> None:
        self.marker = f"--tallow-memory-probe={uuid.uuid4().hex}"
        self.browser: Browser = chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, self.marker]
        )

    def rss(self) -> int:
        return sum(_rss_bytes(pid) for pid in tree(*with_argument(self.marker)))

    @contextlib.contextmanager
    def peak(self) -> Iterator[list[int]]:
        """Samples the tree's RSS until the block ends; yields [peak bytes] (filled at exit)."""
        result = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                result[0] = max(result[0], self.rss())
                stop.wait(SAMPLE_SECONDS)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield result
        finally:
            stop.set()
            thread.join()

    def new_page(self) -> Page:
        context = self.browser.new_context(accept_downloads=True)
        context.add_init_script(STREAM_DOWNLOADS)
        return context.new_page()

    def close(self) -> None:
        self.browser.close()


def write_random(path: Path, mib: int) -> str:
    """`mib` MiB of random bytes at `path`, written a MiB at a time; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(MIB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def receive_peak_growth(
    receiver: MarkedChromium, sender: Page, receiving: Page, path: Path, digest: str
) -> int:
    """Send `path` from `sender` to `receiving` (a page of `receiver`, already verified both
    ways); the receiving Chromium's peak RSS during the transfer minus its RSS just before."""
    before = receiver.rss()
    with receiver.peak() as peak:
        sender.get_by_test_id("file-input").set_input_files(path)
        download = start_receiving(receiving, path.name)
        assert finish_receiving(receiving, path.name, download, timeout=900_000) == (
            path.name,
            digest,
        )
    return peak[0] - before
