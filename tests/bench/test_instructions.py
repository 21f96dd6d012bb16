"""bench/instructions.py end to end, briefly: it counts the servers it starts, not speeds.

Real servers under valgrind, the real Node generator; about a second counted per server.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_counts_instructions_per_relayed_message_for_tallow_and_the_bare_relays() -> None:
    table = subprocess.run(
        [sys.executable, "bench/instructions.py", "--seconds=1", "--as-is"],
        cwd=ROOT,
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    ).stdout
    counts = {
        name.split(" (")[0]: int(count.replace(",", ""))
        for name, count in re.findall(r"^\| (.+?) \| ([\d,]+) \|$", table, re.MULTILINE)
    }
    floor = "Bare relay, signals forwarded unread"
    assert set(counts) == {"Tallow", "Bare relay", floor}, table
    # Counted in the server's own process while it relayed: tens of thousands of instructions
    # per message, Tallow's more than the bare relay's (it does all the bare relay does, and
    # rooms, limits and ordering besides), and the bare relay's more than its own without the
    # JSON (or the floor relay answered nothing and relayed none: no count at all).
    assert 20_000 < counts[floor] < counts["Bare relay"] < counts["Tallow"] < 1_000_000, table
