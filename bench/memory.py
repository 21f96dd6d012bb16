"""Where an idle /signaling connection's memory goes: tracemalloc inside a Tallow server.

    .venv/bin/python bench/memory.py --connections 2000

Runs the server in this process (embedded broker, default settings, tracemalloc on), opens 100
connections with bench/loadgen.mjs to warm it up, takes a snapshot, opens ``--connections``
more, held open and idle (each has its `welcome`), takes a second snapshot and prints the
allocations they added, per connection: by source line, then by package.
"""

from __future__ import annotations

import argparse
import linecache
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio
from servers import ensure_node_packages, run_generator  # puts the repository on sys.path

from harness.processes import free_port
from tallow.config import load
from tallow.server import serve

SETTLE_SECONDS = 2.0


def package(filename: str) -> str:
    """The package an allocation's source line belongs to (site-packages name, or tallow's)."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if "tallow" in parts:
        return "/".join(parts[parts.index("tallow") : parts.index("tallow") + 2])
    return Path(filename).name


def measure(url: str, connections: int) -> dict[str, Any]:
    idle = ["idle", "--protocol", "tallow", "--url", url, "--hold", "120"]
    run_generator([*idle, "--connections", "100"], lambda _: time.sleep(0.5))
    time.sleep(SETTLE_SECONDS)
    before = tracemalloc.take_snapshot()
    taken: dict[str, Any] = {}

    def on_open(_: dict[str, Any]) -> None:
        time.sleep(SETTLE_SECONDS)
        taken["after"] = tracemalloc.take_snapshot()

    result = run_generator([*idle, "--connections", str(connections)], on_open, timeout=600)
    assert result["connections"] == connections, result
    return {"before": before, "after": taken["after"]}


def report(snapshots: dict[str, Any], connections: int, top: int) -> None:
    differences = snapshots["after"].compare_to(snapshots["before"], "lineno")
    total = sum(diff.size_diff for diff in differences)
    print(f"{connections} idle connections: {total / connections / 1024:.2f} KiB each (Python)")
    print("\nby source line (bytes per connection):")
    for diff in differences[:top]:
        frame = diff.traceback[0]
        where = f"{package(frame.filename)}:{Path(frame.filename).name}:{frame.lineno}"
        code = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        print(f"  {diff.size_diff / connections:8.0f}  {where:45} {code}")
    by_package: dict[str, int] = {}
    for diff in differences:
        name = package(diff.traceback[0].filename)
        by_package[name] = by_package.get(name, 0) + diff.size_diff
    print("\nby package (bytes per connection):")
    for name, size in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        print(f"  {size / connections:8.0f}  {name}")


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TALLOW_PORT": str(port),
        "TALLOW_HOST": "127.0.0.1",
        "TALLOW_MAX_CONNECTIONS_PER_IP": "0",
        "LOG_LEVEL": "warning",
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, load(env))
        url = f"ws://127.0.0.1:{port}/signaling"
        snapshots = await trio.to_thread.run_sync(measure, url, args.connections)
        report(snapshots, args.connections, args.top)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    arguments = parser.parse_args()
    ensure_node_packages()
    tracemalloc.start()
    trio.run(main, arguments)
