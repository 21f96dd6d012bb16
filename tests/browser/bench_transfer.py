"""Benchmark, not a test: one file between two local Chromium pages, direct and relay-only.

    .venv/bin/python -m tests.browser.bench_transfer [--mib 50] [--runs 3]

Starts its own Tallow servers and a coturn on free loopback ports. The rate is the sender's view:
file size over the time from its offer until the receiver reported a verified SHA-256, so it
includes encryption, hashing on both sides and back-pressure. docs/webapp.md records results.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from harness.processes import launch
from tests.browser.app import create_room, hook, join_room, random_file, save_received, wait_secure
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, TEST_HOOK
from tests.coturn import run_coturn

MIB = 1024 * 1024


def transfer_rate(browser: Browser, base_url: str, query: str, path: Path) -> float:
    """MiB/s for sending `path` from one fresh page to another."""
    contexts = [browser.new_context(accept_downloads=True) for _ in range(2)]
    try:
        for context in contexts:
            context.add_init_script(TEST_HOOK)
        sender, receiver = (context.new_page() for context in contexts)
        join_room(receiver, create_room(sender, base_url, query), query)
        wait_secure(sender, 1)
        wait_secure(receiver, 1)
        sender.get_by_test_id("file-input").set_input_files(path)
        save_received(receiver, path.name, timeout=600_000)
        sender.wait_for_function(
            "() => window.__tallowTestHook.transfers.every((t) => t.state === 'done')"
        )
        seconds = hook(sender, "(h.transfers[0].finishedAt - h.transfers[0].startedAt) / 1000")
        return path.stat().st_size / MIB / seconds
    finally:
        for context in contexts:
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=50, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="transfers per mode")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        directory = Path(tmp)
        path, _ = random_file(directory, "bench.bin", options.mib * MIB)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        servers = []
        try:
            with run_coturn(directory) as turn:
                servers.append(launch(directory))
                turn_env = {"TURN_URLS": turn.url, "TURN_SECRET": turn.secret}
                servers.append(launch(directory, env=turn_env))
                direct, relayed = servers
                for mode, server, query in (("direct", direct, ""), ("relay", relayed, "?relay=1")):
                    rates = [
                        transfer_rate(browser, server.url, query, path) for _ in range(options.runs)
                    ]
                    print(
                        f"{mode:6} {options.mib} MiB: median {statistics.median(rates):.1f} MiB/s"
                        f" (runs: {', '.join(f'{r:.1f}' for r in rates)})"
                    )
        finally:
            for server in servers:
                server.kill()
            browser.close()


if __name__ == "__main__":
    main()
