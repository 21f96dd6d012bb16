"""Soak: moderate signaling load on two replicas sharing Redis, for a bounded time; then checks
that memory stayed flat and that no task, connection, file descriptor or Redis key was leaked.

    .venv/bin/python scripts/soak.py [--minutes 10] [--pairs 20] [--rate 4] [--json out.json]

Every client pair sits in its own room on two different replicas and exchanges signals at
``--rate`` messages per second each way; every 20-40 s a client drops (half resume with their
token on the other replica, half leave and join afresh). The replicas run the real server under
a Trio instrument that counts live tasks (``--as-tallow``, below). Samples every 10 s; exits 1
if any check fails. Loopback only; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
sys.path.insert(0, str(ROOT))

SETTLE_SECONDS = 15.0  # after the load: resume grace (3 s) + reaping + connection teardown


def as_tallow(argv: list[str]) -> None:
    """Run `tallow` with a Trio instrument that writes the live task count to $SOAK_TASKS."""
    import os

    import trio

    from tallow.cli import main

    class TaskCount(trio.abc.Instrument):
        def __init__(self, path: Path) -> None:
            self.path, self.live, self.due = path, 0, 0.0

        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            self.live += 1

        def task_exited(self, task: trio.lowlevel.Task) -> None:
            self.live -= 1

        def before_io_wait(self, timeout: float) -> None:
            now = time.monotonic()
            if now >= self.due:  # at most once a second: a few bytes, off the hot path
                self.due = now + 1.0
                self.path.write_text(str(self.live))

    counter = TaskCount(Path(os.environ["SOAK_TASKS"]))
    run = trio.run
    trio.run = lambda *args, **kwargs: run(*args, instruments=[counter], **kwargs)
    main(argv, prog_name="tallow")


class Identity:
    """One peer id's numbering: resumes keep it, a fresh join starts a new one."""

    def __init__(self) -> None:
        self.sent = 0  # next number this identity signals
        self.last: dict[str, int] = {}  # last number received from each sender


class Pair:
    """Two clients in one room on two replicas, signalling each other; counts what arrives."""

    def __init__(self, number: int, urls: list[str], rate: float) -> None:
        self.number, self.urls, self.rate = number, urls, rate
        self.sent = self.received = self.errors = self.resumes = self.rejoins = 0
        self.gaps = self.disorder = 0  # signals missing / out of order within one identity pair
        self.problems: list[str] = []
        self.states = ["starting", "starting"]  # what each side is doing, for the samples

    async def run(self, until: float) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            for side in (0, 1):
                nursery.start_soon(self._side, side, until)

    async def _side(self, side: int, until: float) -> None:
        import trio

        from harness.client import connect

        room, resume = f"soak-{self.number}", None
        identity = Identity()
        while trio.current_time() < until:
            url = self.urls[(side + self.resumes + self.rejoins) % 2]
            life = trio.current_time() + random.uniform(20, 40)
            try:
                self.states[side] = "connecting"
                async with connect(url, resume=resume) as me:
                    self.states[side] = "joining"
                    if not me.welcome.get("resumed"):
                        await me.join(room)
                    resume = me.resume
                    self.states[side] = "talking"
                    await self._talk(me, min(life, until), identity)
                    self.states[side] = "closing"
                if random.random() < 0.5:
                    self.resumes += 1  # come back as the same peer, on the other replica
                else:
                    resume, identity = None, Identity()
                    self.rejoins += 1
            except Exception as error:  # a soak keeps going and reports
                self.problems.append(f"pair {self.number} side {side}: {error!r}")
                resume, identity = None, Identity()
                self.states[side] = "pausing"
                await trio.sleep(1)
        self.states[side] = "done"

    async def _talk(self, me: Any, until: float, identity: Identity) -> None:
        import trio

        other: str | None = None
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                nonlocal other
                while True:
                    message = await me.recv(timeout=60)
                    kind = message["type"]
                    if kind == "peer-joined":
                        other = message["peer"]
                    elif kind == "signal":
                        self.received += 1
                        other = message["from"]
                        self._check_order(identity, other, message["data"]["n"])
                    elif kind == "error":
                        self.errors += 1
                    elif kind not in ("peer-left", "pong", "broadcast"):
                        self.problems.append(f"unexpected {message}")

            nursery.start_soon(listen)
            while trio.current_time() < until:
                if other is not None:
                    await me.send({"type": "signal", "to": other, "data": {"n": identity.sent}})
                    self.sent += 1
                    identity.sent += 1
                else:
                    await me.send({"type": "broadcast", "data": "hello"})
                await trio.sleep(1 / self.rate)
            nursery.cancel_scope.cancel()

    def _check_order(self, identity: Identity, sender: str, number: int) -> None:
        last = identity.last.get(sender)
        if last is not None and number > last + 1:
            self.gaps += number - last - 1
        elif last is not None and number <= last:
            self.disorder += 1
        identity.last[sender] = number


def read_count(path: Path) -> int:
    """The task count a replica last wrote (retried: a read may meet the file mid-write)."""
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return int(text)
        time.sleep(0.01)
    raise RuntimeError(f"no task count in {path}")


def sample(servers: list[Any], tasks: list[Path], redis: Any) -> dict[str, Any]:
    from harness.procfs import open_fds, rss_kib

    return {
        "t": round(time.monotonic(), 1),
        "rss_mib": [round(rss_kib(s.process.pid) / 1024, 1) for s in servers],
        "fds": [open_fds(s.process.pid) for s in servers],
        "tasks": [read_count(path) for path in tasks],
        "connections": [s.metric("tallow_connections_open") for s in servers],
        "redis_keys": int(redis.cli("DBSIZE")),
    }


async def soak(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import trio

    from harness.processes import launch
    from harness.redis import RedisServer

    redis = RedisServer(folder / "redis").start()
    servers, tasks = [], []
    try:
        for index in range(2):
            tasks.append(folder / f"tasks-{index}")
            servers.append(
                launch(
                    folder,
                    env={
                        "REDIS_URL": redis.url,
                        "TALLOW_RESUME_SECONDS": "3",
                        "SOAK_TASKS": str(tasks[-1]),
                    },
                    command=[sys.executable, str(SELF), "--as-tallow"],
                )
            )
        await trio.sleep(2)
        samples = [sample(servers, tasks, redis)]
        pairs = [Pair(n, [s.ws_url for s in servers], args.rate) for n in range(args.pairs)]
        until = trio.current_time() + args.minutes * 60
        async with trio.open_nursery() as nursery:
            for pair in pairs:
                nursery.start_soon(pair.run, until)
            while trio.current_time() < until:
                await trio.sleep(10)
                samples.append(sample(servers, tasks, redis))
                samples[-1]["clients"] = Counter(state for p in pairs for state in p.states)
                print(json.dumps(samples[-1]), flush=True)
        await trio.sleep(SETTLE_SECONDS)
        after = sample(servers, tasks, redis)
        return {"samples": samples, "after": after, "pairs": pairs}
    finally:
        for server in servers:
            server.terminate()
        redis.kill()


def verdict(result: dict[str, Any]) -> list[str]:
    """The failed checks (empty: the soak passed)."""
    samples, after = result["samples"], result["after"]
    base, half = samples[0], samples[len(samples) // 2]
    pairs = result["pairs"]
    failed = []
    if after["connections"] != [0.0, 0.0]:
        failed.append(f"connections left open: {after['connections']}")
    if after["tasks"] != base["tasks"]:
        failed.append(f"live tasks {base['tasks']} before, {after['tasks']} after")
    if after["redis_keys"] != base["redis_keys"]:
        failed.append(f"redis keys {base['redis_keys']} before, {after['redis_keys']} after")
    if any(a > b + 2 for a, b in zip(after["fds"], base["fds"], strict=True)):
        failed.append(f"file descriptors {base['fds']} before, {after['fds']} after")
    for index in range(2):  # flat: the second half of the run needs no new memory
        grew = max(s["rss_mib"][index] for s in samples) - half["rss_mib"][index]
        if grew > 8:
            failed.append(f"replica {index} RSS grew {grew:.1f} MiB in the second half")
    during = [s for s in samples if s.get("clients") and "done" not in s["clients"]]
    fewest = min((sum(s["connections"]) for s in during), default=0.0)
    if fewest < 0.8 * 2 * len(pairs):  # clients reconnect all the time, but not all at once
        failed.append(f"only {fewest:.0f} of {2 * len(pairs)} clients connected at one sample")
    if any(pair.problems for pair in pairs):
        failed.extend(problem for pair in pairs for problem in pair.problems[:3])
    if sum(pair.received for pair in pairs) < 0.9 * sum(pair.sent for pair in pairs):
        failed.append("fewer than 90% of signals arrived")
    return failed


def main() -> int:
    if sys.argv[1:2] == ["--as-tallow"]:
        as_tallow(sys.argv[2:])
        return 0
    import trio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=4.0, help="signals per second per client")
    parser.add_argument("--json", type=Path, help="write every sample and the totals here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tallow-soak-") as folder:
        result = trio.run(soak, args, Path(folder))
    pairs = result.pop("pairs")
    totals = {
        key: sum(getattr(pair, key) for pair in pairs)
        for key in ("sent", "received", "errors", "resumes", "rejoins", "gaps", "disorder")
    }
    result["pairs_totals"] = totals
    result["pairs"] = pairs
    failed = verdict(result)
    result.pop("pairs")
    summary = {
        "minutes": args.minutes,
        "pairs": args.pairs,
        "totals": totals,
        "first": result["samples"][0],
        "last": result["samples"][-1],
        "after": result["after"],
        "peak_rss_mib": [max(s["rss_mib"][i] for s in result["samples"]) for i in range(2)],
        "failed": failed,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": result["samples"]}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
