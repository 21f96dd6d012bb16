"""How the browser tests and the benchmark start Debian's Chromium (never a downloaded browser)."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a test installs before the app's script runs to read the handshake secrets (tests only).
TEST_HOOK = (
    "window.__tallowTestHook ="
    " {handshakes: [], frames: [], connections: [], transfers: [], iceRestarts: []};"
)
# Installed on every test page: hide the File System Access pickers, so received files take the
# service-worker download path, which Playwright can capture (tests of the pickers put their own).
STREAM_DOWNLOADS = "window.showSaveFilePicker = undefined; window.showDirectoryPicker = undefined;"
