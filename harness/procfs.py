"""What the kernel says about processes, read from /proc: their trees, memory, CPU time and
descriptors.

The tests, bench/ and scripts/soak.py measure real processes (a server, its workers, a browser and
its renderers) through these, so that every figure is read the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name, which may hold spaces and parentheses
    (so they count from its last ``)``): [1] is the parent, [11] and [12] user and system time."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process still there to read."""
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # exited while we looked
                parents[int(entry.name)] = int(_stat(entry.name)[1])
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


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used."""
    fields, ticks = _stat(pid), os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def open_fds(pid: int) -> int:
    return len(list((PROC / str(pid) / "fd").iterdir()))
