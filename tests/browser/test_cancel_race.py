"""A cancel that crosses the receiver's `done`: the sender never says "cancelled" for a file the
receiver checked and saved.

The sender's page holds the seal of the file's `end` frame (as a busy main thread would for a
moment), and the person presses Cancel meanwhile: the cancel goes out after the `end`, so the
receiver checks the file, saves it and answers `done`, then ignores the cancel.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.app import connected_pair, finish_receiving, hook, random_file, start_receiving

# Once armed, the next AES-GCM seal (the `end` after the last data frame) is held until the test
# calls `window.__releaseSeal()`.
HOLD_NEXT_SEAL = """
window.__holdNextSeal = false;
window.__releaseSeal = null;
const encrypt = SubtleCrypto.prototype.encrypt;
SubtleCrypto.prototype.encrypt = function (algorithm, key, data) {
  const sealed = encrypt.call(this, algorithm, key, data);
  if (!window.__holdNextSeal || algorithm?.name !== 'AES-GCM') return sealed;
  window.__holdNextSeal = false;
  const released = new Promise((resolve) => { window.__releaseSeal = resolve; });
  return Promise.all([sealed, released]).then(([frame]) => frame);
};
"""

# Arm the hold when the last data frame went out, and record every state the transfer shows.
ARM_AFTER_LAST_CHUNK = """(() => {
  const t = h.transfers.find((x) => x.direction === 'out');
  window.__states = [t.state];
  t.addEventListener('change', () => {
    if (window.__states.at(-1) !== t.state) window.__states.push(t.state);
  });
  const progress = t.progress.bind(t);
  t.progress = (bytes) => {
    progress(bytes);
    if (bytes === t.size) window.__holdNextSeal = true;
  };
  return t.size;
})()"""


def test_a_done_that_crosses_a_cancel_wins(tallow_server, new_page, tmp_path: Path) -> None:
    alice, bob = new_page(hook=True), new_page()
    alice.add_init_script(HOLD_NEXT_SEAL)
    connected_pair(alice, bob, tallow_server.url)
    path, digest = random_file(tmp_path, "crossed.bin", 200_000)
    alice.get_by_test_id("file-input").set_input_files(path)
    alice.locator("li.transfer.out").wait_for()
    assert hook(alice, ARM_AFTER_LAST_CHUNK) == 200_000

    download = start_receiving(bob, path.name)
    # Polled from outside: a wait_for_function predicate can be evaluated inside the page, where
    # the app's CSP (no unsafe-eval) refuses it.
    deadline = time.monotonic() + 30
    while not alice.evaluate("window.__releaseSeal !== null"):
        assert time.monotonic() < deadline, "the end frame was never held"
        time.sleep(0.05)
    sent = alice.locator("li.transfer.out")
    sent.locator("button.cancel").click()
    expect(sent).to_have_attribute("data-state", "cancelled")
    alice.evaluate("window.__releaseSeal()")  # the `end` goes out, then the cancel

    assert finish_receiving(bob, path.name, download) == (path.name, digest)
    expect(sent).to_have_attribute("data-state", "done")
    expect(sent.locator(".message")).to_have_text("Delivered before your cancel reached them.")
    # Cancelled when the person pressed it, delivered once their `done` came: nothing between.
    assert alice.evaluate("window.__states")[-3:] == ["active", "cancelled", "done"]
    expect(bob.locator("li.transfer.in")).to_have_attribute("data-state", "done")
