"""The UI as shipped: the committed build is current, strict-CSP clean, small, and usable by phone,
keyboard and screen reader, in light and dark."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

from playwright.sync_api import expect

from harness.processes import http_get

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD_BUDGET = 64 * 1024  # gzip bytes of everything the page loads


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def test_committed_build_matches_the_sources(tmp_path: Path) -> None:
    """Rebuild from web/ and compare with tallow/static as committed, so a fresh clone (and a
    `pip install` of it, with no npm) serves exactly what the sources say."""
    assert (ROOT / "web" / "node_modules").is_dir(), "run `npm ci` in web/ (scripts/test.sh does)"
    subprocess.run(["node", "build.mjs", "--outdir", str(tmp_path)], cwd=ROOT / "web", check=True)
    committed = git("ls-files", "--", "tallow/static").decode().split()
    assert sorted(Path(p).name for p in committed) == sorted(p.name for p in tmp_path.iterdir()), (
        "tallow/static is stale: run `npm run build` in web/ and commit tallow/static"
    )
    for path in committed:
        assert git("show", f"HEAD:{path}") == (tmp_path / Path(path).name).read_bytes(), path


def test_index_is_csp_clean_small_and_served_immutable(tallow_server) -> None:
    status, _, body = http_get(tallow_server.url + "/")
    assert status == 200
    html = body.decode()
    assert "<style" not in html and " style=" not in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(' src="/' in tag for tag in scripts)
    assets = re.findall(r'(?:src|href)="/([^"]+)"', html)
    assert {Path(a).suffix for a in assets} == {".js", ".css", ".svg"}
    total = len(gzip.compress(body))
    for asset in assets:
        assert re.fullmatch(r"[a-z]+-[0-9a-f]{12}\.(js|css|svg)", asset)
        status, headers, content = http_get(f"{tallow_server.url}/{asset}")
        assert status == 200
        assert "immutable" in headers["cache-control"]
        total += len(gzip.compress(content))
    assert total < PAYLOAD_BUDGET, total


def test_phone_width_keyboard_and_dark_theme(tallow_server, new_page, artifacts: Path) -> None:
    page = new_page(viewport={"width": 360, "height": 740}, color_scheme="dark")
    page.goto(tallow_server.url + "/")
    expect(page.get_by_test_id("create-room")).to_be_enabled()
    # Keyboard only: Tab to "Create room", press Enter.
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.testid") == "create-room":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("room-code")).to_have_text(re.compile(r"\S+"))

    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    dark_background = "rgb(23, 23, 26)"  # --bg under prefers-color-scheme: dark
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == dark_background
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input')].filter(i => i.labels.length === 0).length"
    )
    assert unlabelled == 0
    expect(page.get_by_role("status")).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    page.screenshot(path=artifacts / "tallow-phone-dark.png", full_page=True)


def test_join_by_typed_code_and_names_are_editable_and_remembered(tallow_server, new_page) -> None:
    alice, bob = new_page(), new_page()
    alice.goto(tallow_server.url + "/")
    alice.get_by_label("Your name").fill("Alice")
    alice.get_by_label("Your name").press("Enter")
    alice.get_by_test_id("create-room").click()
    expect(alice.get_by_test_id("room-code")).to_have_text(re.compile(r"\S"))
    code = alice.get_by_test_id("room-code").inner_text()

    bob.goto(tallow_server.url + "/")
    expect(bob.get_by_role("button", name="Join", exact=True)).to_be_enabled()  # server reached
    bob.get_by_label("Or join with a code").fill(code.lower())  # codes are case-insensitive
    bob.get_by_label("Or join with a code").press("Enter")
    expect(bob.get_by_test_id("peer")).to_contain_text("Alice")

    alice.get_by_label("Your name").fill("Alice B.")
    alice.get_by_label("Your name").press("Enter")
    expect(bob.get_by_test_id("peer").locator("h3")).to_have_text("Alice B.")
    alice.reload()
    expect(alice.get_by_label("Your name")).to_have_value("Alice B.")
