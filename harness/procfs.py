"""What the kernel says about processes, read from /proc: their trees, memory and descriptors.

The tests, bench/ and scripts/soak.py measure real processes (a server, its workers, a browser and
its renderers) through these, so that every figure is read the same way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

PROC = Path("/proc")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process still there to read."""
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # exited while we looked
                stat = (entry / "stat").read_text()
                # The command name in parentheses may hold spaces: fields count from its end.
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree(*roots: int) -> set[int]:
    """``roots`` and all their descendants (a root that descends from another counts once)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def with_argument(text: str) -> list[int]:
    """The processes whose command line contains ``text`` (a marker switch, say)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB, what the kernel charges the process. Raises OSError
    once the process is gone, KeyError for one with no memory left (a zombie)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(list((PROC / str(pid) / "fd").iterdir()))
