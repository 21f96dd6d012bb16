"""The web app's limits, each with its number, what the person sees, and a bound that holds.

The table of limits is in docs/webapp.md ("Limits"); the numbers here mirror web/src.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.app import create_room, hook, join_room, wait_secure

EARLY_FRAMES = 64  # MAX_EARLY_FRAMES in web/src/channel.js
FILES_PER_OFFER = 256  # MAX_FILES_PER_OFFER in web/src/transfer.js
TEXT_BYTES = 1024 * 1024  # TEXT_MAX_BYTES in web/src/transfer.js
NAME_CHARS = 200  # a received name segment, safeSegment in web/src/names.js
FLOOD = 200  # frames of 64 KiB the attacker sends: 12.5 MiB, under Chromium's 16 MiB send buffer

# The attacker's page (the initiator): it withholds hs3, so the victim never gets its keys, and
# floods the data channel with 64 KiB frames as soon as it opens.
FLOOD_BEFORE_KEYS = f"""
const wsSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {{
  if (typeof data === 'string' && data.includes('"t":"hs3"')) return undefined;
  return wsSend.call(this, data);
}};
window.__flooded = 0;
const create = RTCPeerConnection.prototype.createDataChannel;
RTCPeerConnection.prototype.createDataChannel = function (...args) {{
  const dc = create.apply(this, args);
  dc.addEventListener('open', () => {{
    const junk = new Uint8Array(64 * 1024);
    try {{
      for (let i = 0; i < {FLOOD}; i++) {{
        dc.send(junk);
        window.__flooded += 1;
      }}
    }} catch {{}}
  }});
  return dc;
}};
"""

# The victim's page: counts the frames its data channel delivered to the app, and how many had
# arrived when the app closed the channel.
COUNT_DELIVERED = """
window.__delivered = 0;
window.__deliveredAtClose = null;
const add = RTCDataChannel.prototype.addEventListener;
RTCDataChannel.prototype.addEventListener = function (type, listener, options) {
  const counted = type === 'message'
    ? (event) => { window.__delivered += 1; return listener(event); }
    : listener;
  return add.call(this, type, counted, options);
};
const close = RTCDataChannel.prototype.close;
RTCDataChannel.prototype.close = function () {
  window.__deliveredAtClose ??= window.__delivered;
  return close.call(this);
};
"""

TOO_EARLY = f"more than {EARLY_FRAMES} messages arrived before the keys were agreed"


def test_frames_before_the_handshake_are_bounded(tallow_server, new_page) -> None:
    alice, bob = new_page(hook=True), new_page()
    alice.add_init_script(COUNT_DELIVERED)
    bob.add_init_script(FLOOD_BEFORE_KEYS)
    alice.log.expected.append(TOO_EARLY)
    join_room(bob, create_room(alice, tallow_server.url))

    victim = alice.get_by_test_id("peer").first
    expect(victim).to_have_attribute("data-state", "failed")
    expect(victim).to_contain_text(TOO_EARLY)
    expect(victim).to_contain_text("Nothing more was sent")
    assert bob.evaluate("window.__flooded") == FLOOD, "the attacker sent its whole flood"
    # The frame after the 64th held ones closed the channel; what was held is dropped at once.
    assert alice.evaluate("window.__deliveredAtClose") == EARLY_FRAMES + 1
    held = hook(
        alice, "[h.connections[0].channel.pending.length, h.connections[0].channel.session]"
    )
    assert held == [0, None]


def test_offer_text_and_name_limits(tallow_server, new_page) -> None:
    alice, bob = new_page(), new_page()
    join_room(bob, create_room(alice, tallow_server.url))
    wait_secure(alice, 1)
    wait_secure(bob, 1)

    def files(count: int) -> list[dict]:
        return [
            {"name": f"f{n}.txt", "mimeType": "text/plain", "buffer": b"x"} for n in range(count)
        ]

    # One file too many: the sender says so and sends nothing (the receiver would fail the peer).
    alice.get_by_test_id("file-input").set_input_files(files=files(FILES_PER_OFFER + 1))
    expect(alice.get_by_role("alert").first).to_contain_text(
        f"{FILES_PER_OFFER + 1} files, and one offer holds at most {FILES_PER_OFFER}"
    )
    alice.get_by_test_id("text-input").fill("y" * (TEXT_BYTES + 1))
    alice.get_by_test_id("send-text").click()
    expect(alice.get_by_role("alert").first).to_contain_text("longer than 1 MiB")
    expect(alice.locator("li.transfer")).to_have_count(0)

    # Exactly at the limits: both arrive as offers, and the peers stay connected.
    alice.get_by_test_id("file-input").set_input_files(files=files(FILES_PER_OFFER))
    alice.get_by_test_id("text-input").fill("y" * TEXT_BYTES)
    alice.get_by_test_id("send-text").click()
    # A received name is cut to 200 characters (a name of 300 is allowed to the sender).
    alice.get_by_test_id("file-input").set_input_files(
        files=[{"name": "n" * 300, "mimeType": "text/plain", "buffer": b"z"}]
    )
    offers = bob.locator("li.transfer.in[data-state=offered]")
    expect(offers).to_have_count(3)
    expect(offers.filter(has_text=f"{FILES_PER_OFFER} files")).to_have_count(1)
    expect(offers.locator(".name").filter(has_text="nnn")).to_have_text("n" * NAME_CHARS)
    expect(bob.get_by_test_id("peer")).to_have_attribute("data-state", "secure")
