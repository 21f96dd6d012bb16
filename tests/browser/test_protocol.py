"""A peer that breaks the application protocol inside the encrypted channel fails the session.

docs/webapp.md: "A receiver fails the session on an unknown `t`". The sending page is rewritten by
script (as a hostile client would be): its next display name goes out as a control message whose
`t` is a member every JavaScript object inherits, which a lookup table must not take for a known
message.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.app import connected_pair

# Installed before the app's script: the name message for HOSTILE_NAME is sent as {t: <member>}.
HOSTILE_NAME = "send-an-inherited-type"
REWRITE = f"""
const stringify = JSON.stringify;
JSON.stringify = function (value, ...rest) {{
  const hostile = value?.t === 'name' && value.name === '{HOSTILE_NAME}';
  if (hostile) return stringify({{ t: 'constructor' }});
  return stringify.call(this, value, ...rest);
}};
"""
FAILED = "unknown message constructor"


def test_a_control_message_named_like_an_object_member_fails_the_session(
    tallow_server, new_page
) -> None:
    alice, bob = new_page(), new_page()
    bob.add_init_script(REWRITE)
    connected_pair(alice, bob, tallow_server.url)
    alice.log.expected.append(FAILED)

    bob.get_by_label("Your name").fill(HOSTILE_NAME)
    bob.get_by_label("Your name").press("Enter")

    peer = alice.get_by_test_id("peer").first
    expect(peer).to_have_attribute("data-state", "failed")
    expect(peer).to_contain_text(FAILED)
