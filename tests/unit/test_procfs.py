"""harness.procfs on real processes: a parent with a child, found by a marker and measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from harness import procfs

# A parent that starts a child and waits for it; both sleep until killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_tree_marker_memory_and_descriptors_of_real_processes() -> None:
    marker = f"--procfs-probe={uuid.uuid4().hex}"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, marker], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert procfs.with_argument(marker) == [parent.pid]
        assert procfs.tree(parent.pid) == {parent.pid, child}
        assert procfs.tree(parent.pid, child) == {parent.pid, child}  # counted once
        assert procfs.tree(child) == {child}
        assert 1_000 < procfs.rss_kib(parent.pid) < 1_000_000  # a Python process: MiBs
        assert procfs.open_fds(parent.pid) >= 3  # stdin, stdout, stderr at least
    finally:
        os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
    with pytest.raises(OSError):  # reaped: gone from /proc
        procfs.rss_kib(parent.pid)


def test_cpu_times_agree_with_the_kernels_own_count_and_grow_with_work() -> None:
    before = procfs.cpu_times(os.getpid())
    sum(range(20_000_000))  # a quarter of a second or so of user time, no system calls
    user, system = procfs.cpu_times(os.getpid())
    own = os.times()  # the same counts by another route (times(2))
    assert abs(user - own.user) <= 0.02 and abs(system - own.system) <= 0.02
    assert user - before[0] >= 0.1
