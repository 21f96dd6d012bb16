"""An attacker inside DTLS opens a second data channel: it is refused, and no nonce repeats.

Someone who can sit inside DTLS (a signaling server that swaps the SDP fingerprints) can open
data channels of its own towards a victim. Here the attacker is script in the other person's page,
which reaches the victim's peer connection exactly as such a server would: it opens a second
`tallow` channel and replays every frame recorded on the first one into it. The victim must refuse
the channel and fail the peer with a plain message, accept none of the replayed frames, and never
seal two frames under the same (key, nonce) pair.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.app import connected_pair, random_file, save_received

# Installed before the app's script: records every data-channel frame a page sends and every
# AES-GCM (key, nonce) pair it seals with (keys are non-extractable: told apart by identity).
RECORDER = """
window.__sent = [];
window.__sealed = [];
const keyIds = new Map();
const hex = (bytes) =>
  Array.from(new Uint8Array(bytes.buffer ?? bytes), (b) => b.toString(16).padStart(2, '0')).join();
const send = RTCDataChannel.prototype.send;
RTCDataChannel.prototype.send = function (data) {
  window.__sent.push({ label: this.label, stream: this.id, bytes: new Uint8Array(data.slice(0)) });
  return send.call(this, data);
};
const encrypt = SubtleCrypto.prototype.encrypt;
SubtleCrypto.prototype.encrypt = function (algorithm, key, data) {
  if (algorithm?.name === 'AES-GCM') {
    if (!keyIds.has(key)) keyIds.set(key, keyIds.size);
    window.__sealed.push(`${keyIds.get(key)}:${hex(algorithm.iv)}`);
  }
  return encrypt.call(this, algorithm, key, data);
};
"""

# Run in the attacker's page: open a second channel on the same peer connection and replay into
# it every frame this page sent on the first one. Resolves once the frames are sent (or the victim
# closed the channel first).
REPLAY = """
() => new Promise((resolve) => {
  const { pc } = window.__tallowTestHook.connections[0];
  const recorded = window.__sent.filter((f) => f.label === 'tallow').map((f) => f.bytes);
  const extra = pc.createDataChannel('tallow', { ordered: true });
  extra.binaryType = 'arraybuffer';
  extra.onopen = () => {
    for (const bytes of recorded) extra.send(bytes);
    resolve(recorded.length);
  };
  extra.onclose = () => resolve(recorded.length);
  setTimeout(() => resolve(-1), 20000);
})
"""

REFUSED = "opened an unexpected extra connection"


def attacked_pair(new_page, base_url: str) -> tuple[Page, Page]:
    """Alice creates the room (responder), Bob joins (initiator); both record what they seal."""
    alice, bob = new_page(hook=True), new_page(hook=True)
    for page in (alice, bob):
        page.add_init_script(RECORDER)
    connected_pair(alice, bob, base_url)
    return alice, bob


def peer_of(page: Page):
    return page.get_by_test_id("peer").first


def assert_no_nonce_reused(*pages: Page) -> None:
    for page in pages:
        sealed = page.evaluate("window.__sealed")
        assert sealed, "the recorder saw no AES-GCM frame"
        reused = [pair for pair, count in Counter(sealed).items() if count > 1]
        assert not reused, f"(key, nonce) pairs sealed more than once: {reused}"


def test_second_channel_towards_the_responder_is_refused_and_replays_go_nowhere(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = attacked_pair(new_page, tallow_server.url)
    # Something worth replaying: a whole transfer from Bob to Alice (offer, data, end).
    path, digest = random_file(tmp_path, "once.bin", 200_000)
    bob.get_by_test_id("file-input").set_input_files(path)
    assert save_received(alice, path.name) == (path.name, digest)

    alice.log.expected.append(REFUSED)
    replayed = bob.evaluate(REPLAY)
    assert replayed > 3, "the attacker had frames to replay"

    expect(peer_of(alice)).to_have_attribute("data-state", "failed")
    expect(peer_of(alice)).to_contain_text(REFUSED)
    # The replayed offer and data were not taken as a second file.
    expect(alice.get_by_test_id("received-file")).to_have_count(1)
    assert_no_nonce_reused(alice, bob)


def test_channel_towards_the_initiator_is_refused(tallow_server, new_page) -> None:
    alice, bob = attacked_pair(new_page, tallow_server.url)
    bob.log.expected.append(REFUSED)
    alice.evaluate(REPLAY)

    expect(peer_of(bob)).to_have_attribute("data-state", "failed")
    expect(peer_of(bob)).to_contain_text(REFUSED)
    assert_no_nonce_reused(alice, bob)
