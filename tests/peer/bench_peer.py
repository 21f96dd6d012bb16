"""Benchmark, not a test: the command-line peer's transfer rate, direct and relay-only.

    .venv/bin/python -m tests.peer.bench_peer [--mib 50] [--runs 3]

Starts its own Tallow servers and a coturn on free loopback ports, and measures terminal ->
terminal, terminal -> browser and browser -> terminal (Debian's Chromium). The rate is the file
size over the time from the receiver's acceptance until the sender's `sent:` line (the receiver's
`received:` line when a browser sends), so it includes encryption, both hashes and back-pressure.
docs/performance.md records results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from harness.processes import launcher
from tests.browser.app import create_room, finish_receiving, join_room, random_file, wait_secure
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, STREAM_DOWNLOADS
from tests.coturn import run_coturn
from tests.peer.cli_peer import PeerProcess

MIB = 1024 * 1024
TIMEOUT = 600.0
CASES = ("terminal -> terminal", "terminal -> browser", "browser -> terminal")


def rate(path: Path, seconds: float) -> float:
    return path.stat().st_size / MIB / seconds


def terminal_to_terminal(url: str, relay: list[str], path: Path) -> float:
    send = ["send", str(path), "--server", url, "--yes", *relay]
    with PeerProcess(send, path.parent) as sender:
        out = Path(tempfile.mkdtemp(dir=path.parent))
        receive = ["receive", sender.value("link"), "--accept", *relay, "--out", str(out)]
        with PeerProcess(receive, out) as receiver:
            sender.value("sent", TIMEOUT)
            assert receiver.wait() == 0 and sender.wait() == 0
            shutil.rmtree(out)
            return rate(path, sender.when("sent: ") - receiver.when("--accept: taking"))


def terminal_to_browser(browser: Browser, url: str, relay: list[str], path: Path) -> float:
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(STREAM_DOWNLOADS)
    send = ["send", str(path), "--server", url, "--yes", *relay]
    with PeerProcess(send, path.parent) as sender:
        page = context.new_page()
        join_room(page, sender.value("link"), "?relay=1" if relay else "")
        wait_secure(page, 1)
        button = page.get_by_test_id("accept-file")
        button.wait_for()
        with page.expect_download() as download:
            button.click()
            accepted = time.monotonic()
        finish_receiving(page, path.name, download.value, timeout=TIMEOUT * 1000)
        sender.value("sent", TIMEOUT)
        assert sender.wait() == 0
        context.close()
        return rate(path, sender.when("sent: ") - accepted)


def browser_to_terminal(browser: Browser, url: str, relay: list[str], path: Path) -> float:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    link = create_room(page, url, "?relay=1" if relay else "")
    out = Path(tempfile.mkdtemp(dir=path.parent))
    with PeerProcess(["receive", link, "--accept", *relay, "--out", str(out)], out) as receiver:
        wait_secure(page, 1)
        page.get_by_test_id("file-input").set_input_files(path)
        receiver.value("received", TIMEOUT)
        assert receiver.wait() == 0
        context.close()
        shutil.rmtree(out)
        return rate(path, receiver.when("received: ") - receiver.when("--accept: taking"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=50, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="transfers per case")
    parser.add_argument(
        "--case", action="append", choices=CASES, help="only this case (repeatable; default: all)"
    )
    options = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        path, _ = random_file(directory, "bench.bin", options.mib * MIB)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        turn = stack.enter_context(run_coturn(directory))
        start = stack.enter_context(launcher(directory))
        modes = {
            "direct": (start(), []),
            "relay": (start(env={"TURN_URLS": turn.url, "TURN_SECRET": turn.secret}), ["--relay"]),
        }
        cases = {
            "terminal -> terminal": lambda url, relay: terminal_to_terminal(url, relay, path),
            "terminal -> browser": lambda url, relay: terminal_to_browser(
                browser, url, relay, path
            ),
            "browser -> terminal": lambda url, relay: browser_to_terminal(
                browser, url, relay, path
            ),
        }
        for name in options.case or CASES:
            for mode, (server, relay) in modes.items():
                rates = [cases[name](server.url, relay) for _ in range(options.runs)]
                print(
                    f"{name:20} {mode:6} {options.mib} MiB: median "
                    f"{statistics.median(rates):.1f} MiB/s "
                    f"(runs: {', '.join(f'{r:.1f}' for r in rates)})",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
