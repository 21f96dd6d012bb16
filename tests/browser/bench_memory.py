"""Benchmark, not a test: a receiving Chromium's peak memory against the size of the file.

    .venv/bin/python -m tests.browser.bench_memory [--mib 256 1024]

Starts its own Tallow server on a free loopback port, a sender Chromium and a separate receiver
Chromium, and sends one random file of each size; prints the receiver's peak resident memory
growth (its whole process tree) and the rate. docs/performance.md records results.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from harness.processes import launch
from tests.browser.app import connected_pair
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, STREAM_DOWNLOADS
from tests.browser.memory import MIB, MarkedChromium, receive_peak_growth, write_random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[256, 1024], help="file sizes")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        directory = Path(tmp)
        server = launch(directory)
        sender_browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        receiver = MarkedChromium(playwright.chromium)
        try:
            context = sender_browser.new_context()
            context.add_init_script(STREAM_DOWNLOADS)
            alice, bob = context.new_page(), receiver.new_page()
            connected_pair(alice, bob, server.url)
            for mib in options.mib:
                path = directory / f"bench-{mib}.bin"
                digest = write_random(path, mib)
                started = time.monotonic()
                growth = receive_peak_growth(receiver, alice, bob, path, digest)
                seconds = time.monotonic() - started
                print(
                    f"{mib:5} MiB: receiver peak RSS growth {growth / MIB:.0f} MiB"
                    f" ({mib / seconds:.1f} MiB/s end to end)"
                )
                path.unlink()
        finally:
            receiver.close()
            sender_browser.close()
            server.kill()


if __name__ == "__main__":
    main()
