"""``tallow serve --reload`` for development: restart the server when its code changes.

The parent only watches; the server runs in a child process, so each restart is a clean start.
Polling modification times keeps this free of extra dependencies and works on bind mounts.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

WATCHED = Path(__file__).resolve().parent
POLL_SECONDS = 1.0


def _snapshot() -> dict[Path, float]:
    return {
        path: path.stat().st_mtime
        for path in WATCHED.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def run_with_reload(args: list[str]) -> int:
    """Run ``python -m tallow <args>`` and restart it on every change below the package."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        seen = _snapshot()
        child = subprocess.Popen([sys.executable, "-m", "tallow", *args])
        while not stopping and child.poll() is None and _snapshot() == seen:
            time.sleep(POLL_SECONDS)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait()
        if stopping:
            return 0
        if child.returncode not in (0, -signal.SIGTERM) and _snapshot() == seen:
            return child.returncode  # crashed by itself, not because of an edit
        print("tallow: code changed, restarting", file=sys.stderr, flush=True)
