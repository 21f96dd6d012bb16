"""Benchmark, not a test: one file between two local Chromium pages, against a bare data channel.

    .venv/bin/python -m tests.browser.bench_transfer [--mib 50] [--runs 3] [--relay]

Starts its own Tallow servers (and with --relay a coturn) on free loopback ports. Runs alternate:
Tallow's encrypted transfer, then a bare unencrypted RTCDataChannel between two pages of the same
Chromium moving the same number of bytes in the same message size with the same back-pressure
(no Tallow code). The Tallow rate is the sender's view: file size over the time from the
receiver's accept until the receiver reported a checked length and hash, so it includes
encryption, hashing on both sides, writing to the download and back-pressure.
docs/performance.md records results.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from harness.processes import launch
from tests.browser.app import create_room, hook, join_room, random_file, save_received, wait_secure
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, STREAM_DOWNLOADS, TEST_HOOK
from tests.coturn import run_coturn

MIB = 1024 * 1024
# The same as web/src/channel.js: frame size and back-pressure watermarks.
MAX_FRAME = 64 * 1024
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024


def transfer_rate(browser: Browser, base_url: str, query: str, path: Path) -> float:
    """MiB/s for sending `path` from one fresh page to another."""
    contexts = [browser.new_context(accept_downloads=True) for _ in range(2)]
    try:
        for context in contexts:
            context.add_init_script(TEST_HOOK)
            context.add_init_script(STREAM_DOWNLOADS)
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


# Two pages connected by a plain RTCDataChannel, SDP passed by this script (no trickle ICE).
GATHERED = """window.gathered = (pc) => new Promise((resolve) => {
  const check = () => pc.iceGatheringState === 'complete' && resolve();
  pc.addEventListener('icegatheringstatechange', check);
  check();
});
true;"""
BARE_OFFER = """async () => {
  const pc = new RTCPeerConnection();
  const dc = pc.createDataChannel('bare', { ordered: true });
  Object.assign(window, { pc, dc });
  dc.binaryType = 'arraybuffer';
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  return pc.localDescription.toJSON();
}"""
BARE_ANSWER = """async (offer) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  window.received = 0;
  pc.addEventListener('datachannel', ({ channel }) => {
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('message', (e) => {
      window.received += e.data.byteLength;
      if (window.received >= window.expected) window.doneAt = Date.now();
    });
  });
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.toJSON();
}"""
BARE_SEND = """async ([answer, total, message, high, low]) => {
  await pc.setRemoteDescription(answer);
  const once = (type) => new Promise((r) => dc.addEventListener(type, r, { once: true }));
  if (dc.readyState !== 'open') await once('open');
  const started = Date.now();
  dc.bufferedAmountLowThreshold = low;
  const data = crypto.getRandomValues(new Uint8Array(message));
  for (let sent = 0; sent < total; sent += message) {
    dc.send(data.subarray(0, Math.min(message, total - sent)));
    if (dc.bufferedAmount > high) await once('bufferedamountlow');
  }
  return started;
}"""


def bare_rate(browser: Browser, base_url: str, total: int) -> float:
    """MiB/s of `total` bytes over a bare data channel, with Tallow's frame size and watermarks."""
    context = browser.new_context()
    try:
        sender, receiver = context.new_page(), context.new_page()
        for page in (sender, receiver):
            page.goto(f"{base_url}/api/health")  # a secure-context origin, no app
            page.evaluate(GATHERED)
        offer = sender.evaluate(BARE_OFFER)
        receiver.evaluate(f"window.expected = {total}")
        answer = receiver.evaluate(BARE_ANSWER, offer)
        started = sender.evaluate(BARE_SEND, [answer, total, MAX_FRAME, HIGH_WATER, LOW_WATER])
        receiver.wait_for_function("() => window.doneAt", timeout=600_000)
        seconds = (receiver.evaluate("window.doneAt") - started) / 1000
        return total / MIB / seconds
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=50, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind")
    parser.add_argument("--relay", action="store_true", help="also Tallow relay-only via coturn")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        directory = Path(tmp)
        path, _ = random_file(directory, "bench.bin", options.mib * MIB)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        servers = [launch(directory)]
        try:
            tallow, bare = [], []
            for _ in range(options.runs):  # alternated, so load changes hit both alike
                tallow.append(transfer_rate(browser, servers[0].url, "", path))
                bare.append(bare_rate(browser, servers[0].url, options.mib * MIB))
            report("tallow", options.mib, tallow)
            report("bare", options.mib, bare)
            ratio = statistics.median(tallow) / statistics.median(bare)
            print(f"tallow / bare data channel: {ratio:.2f}x")
            if options.relay:
                with run_coturn(directory) as turn:
                    turn_env = {"TURN_URLS": turn.url, "TURN_SECRET": turn.secret}
                    servers.append(launch(directory, env=turn_env))
                    relayed = [
                        transfer_rate(browser, servers[1].url, "?relay=1", path)
                        for _ in range(options.runs)
                    ]
                    report("relay", options.mib, relayed)
        finally:
            for server in servers:
                server.kill()
            browser.close()


def report(mode: str, mib: int, rates: list[float]) -> None:
    runs = ", ".join(f"{r:.1f}" for r in rates)
    print(f"{mode:6} {mib} MiB: median {statistics.median(rates):.1f} MiB/s (runs: {runs})")


if __name__ == "__main__":
    main()
