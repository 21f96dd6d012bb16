"""Measure Redis fan-out: signal latency, relay throughput, and recovery from failures.

    .venv/bin/python -m bench.redis_fanout [--samples 1000] [--seconds 5] [--pairs 20]
    .venv/bin/python -m bench.redis_fanout --relay [--pairs 100] [--runs 3] [--seconds 8]
        [--trees TREE,TREE]
    .venv/bin/python -m bench.redis_fanout --script-cost
    .venv/bin/python -m bench.redis_fanout --deliver-cost [--trees TREE,TREE]
    .venv/bin/python -m bench.redis_fanout --broker-path [--per-tick 20] [--trees TREE,TREE]

Starts its own redis-server, redis-sentinel and Tallow processes on free loopback ports (as the
tests do) and prints one line per figure. Not a test: the numbers depend on the machine.

``--relay`` measures only relayed messages/s and round trips with the Node generator
(bench/loadgen.mjs, 300-byte payloads, one message in flight per pair), alternating run by run
between the embedded broker, Redis with both peers on one replica, Redis with every signal
crossing replicas, and the same across a Redis Cluster (3 primaries, one replica each); with
Redis CPU per relayed message from INFO CPU (summed over the cluster's primaries), and the
medians' ratios. ``--trees`` alternates source trees too (``git worktree add`` the commits to
compare): each tree's replicas run with its directory first on PYTHONPATH.

``--deliver-cost`` measures Redis alone: its CPU per frame of one merged ``DELIVER`` run (22
signals for peers attached to another replica, whose channel a subscriber reads), in pipelines
of 50 runs; with ``--trees``, each tree's script in turn. ``--broker-path`` measures Tallow's
Python alone on the path of a crossing signal: two RedisBrokers in one process (the sender's and
the receiver's replica) on a real redis-server, ``--per-tick`` signals handed to ``deliver`` per
scheduler tick until each tick's results are back, the receiver's inboxes taking every frame;
the process's CPU time per frame (both replicas' share, no WebSocket work); with ``--trees``,
each tree in a process of its own, alternated, three runs each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from harness.client import connect
from harness.processes import TallowProcess, launch
from harness.procfs import rss_kib
from harness.redis import RedisCluster, RedisServer, Sentinel, eventually, signal_until_through
from tallow.redis_url import parse_redis_url

# A relayed signal as the broker carries it: 22-character peer id, 280 bytes of data.
SIGNAL = b'{"type":"signal","from":"' + b"p" * 22 + b'","data":"' + b"a" * 280 + b'"}'
WINDOW = 32  # signals a throughput sender may have on their way before it waits


def _report(name: str, value: str) -> None:
    print(f"{name:<58} {value}", flush=True)


def _redis_stats(*nodes: RedisServer) -> tuple[float, int]:
    """(CPU seconds, commands processed) of these redis-servers so far, summed."""
    cpu, commands = 0.0, 0
    for node in nodes:
        lines = node.cli("INFO", "all").splitlines()
        info = dict(line.split(":", 1) for line in lines if ":" in line)
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        commands += int(info["total_commands_processed"])
    return cpu, commands


def _percentiles(samples: list[float]) -> str:
    ms = sorted(sample * 1000 for sample in samples)
    p50, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  (n={len(ms)})"


async def latency(alice_url: str, bob_url: str, samples: int) -> list[float]:
    """One signal at a time, send to receive, both clients in this process (one clock)."""
    async with connect(alice_url) as alice, connect(bob_url) as bob:
        await alice.join("latency"), await bob.join("latency")
        await alice.recv()
        times = []
        for number in range(samples + 50):
            started = time.perf_counter()
            await alice.send({"type": "signal", "to": bob.peer, "data": number})
            await bob.recv()
            if number >= 50:  # warm-up
                times.append(time.perf_counter() - started)
        return times


async def throughput(urls: tuple[str, str], pairs: int, seconds: float) -> tuple[float, int]:
    """Signals relayed per second by ``pairs`` senders, each with at most WINDOW unanswered.

    The window keeps receivers from being cut off as slow readers (close 1013), which is what
    an unbounded sender would measure instead.
    """
    received = 0

    async def pair(index: int) -> None:
        nonlocal received
        credits = trio.Semaphore(WINDOW)
        async with connect(urls[0]) as sender, connect(urls[1]) as receiver:
            room = f"tp-{index}"
            await sender.join(room), await receiver.join(room)
            await sender.recv()

            async def drain() -> None:
                nonlocal received
                while True:
                    await receiver.ws.get_message()
                    received += 1
                    credits.release()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await start.wait()
                with trio.move_on_after(seconds):
                    while True:
                        await credits.acquire()
                        await sender.send({"type": "signal", "to": receiver.peer, "data": "x"})
                nursery.cancel_scope.cancel()

    start = trio.Event()
    async with trio.open_nursery() as nursery:
        for index in range(pairs):
            nursery.start_soon(pair, index)
        await trio.sleep(3)
        start.set()
        began = trio.current_time()
    return received / (trio.current_time() - began), received


async def idle_peers(server: TallowProcess, redis: RedisServer, count: int) -> tuple[float, float]:
    """(replica KiB, Redis bytes) per idle peer, with ``count`` peers joined in rooms of two."""

    def redis_bytes() -> int:
        return int(redis.cli("INFO", "memory").split("used_memory:")[1].split()[0])

    pid = server.process.pid
    rss, used = rss_kib(pid), redis_bytes()
    joined = 0
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def peer(index: int) -> None:
            nonlocal joined
            async with contextlib.AsyncExitStack() as stack:
                async with opening:  # a few at a time: a burst of handshakes is another test
                    client = await stack.enter_async_context(connect(server.ws_url))
                    await client.join(f"idle-{index // 2}", f"peer {index}", {"device": "laptop"})
                joined += 1
                await done.wait()

        opening = trio.CapacityLimiter(20)
        for index in range(count):
            nursery.start_soon(peer, index)
        await eventually(lambda: joined == count, 120)
        await trio.sleep(1)
        result = (rss_kib(pid) - rss) / count, (redis_bytes() - used) / count
        done.set()
    return result


async def dead_replica(start: Callable[..., TallowProcess], room: str) -> float:
    """SIGKILL a replica: seconds until a peer elsewhere hears its peer left (grace 0)."""
    one, two = start(TALLOW_RESUME_SECONDS="0"), start(TALLOW_RESUME_SECONDS="0")
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join(room), await bob.join(room)
        await alice.recv()
        two.process.kill()
        started = trio.current_time()
        notice = await alice.recv(30)  # what the dead replica held for Bob may be lost
        assert notice == {"type": "peer-interrupted", "room": room.upper(), "peer": bob.peer}
        message = await alice.recv(30)
        assert message == {"type": "peer-left", "room": room.upper(), "peer": bob.peer}, message
        elapsed = trio.current_time() - started
    one.terminate()
    return elapsed


async def _both_ways(alice: Any, bob: Any) -> float:
    """Seconds until signals cross replicas again in both directions."""
    first = await signal_until_through(alice, bob, 60)
    return first + await signal_until_through(bob, alice, 60)


async def redis_restart(start: Callable[..., TallowProcess], redis: RedisServer) -> float:
    """Restart an empty Redis: seconds from it being back until a signal crosses replicas."""
    one, two = start(), start()
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join("restart"), await bob.join("restart")
        await alice.recv()
        redis.kill()
        await trio.sleep(2)
        redis.start()
        return await _both_ways(alice, bob)


async def sentinel_failover(start: Callable[..., TallowProcess], workdir: Path) -> float:
    """Kill the primary: seconds until a signal crosses replicas again (down-after 1 s)."""
    primary = RedisServer(workdir / "primary").start()
    standby = RedisServer(
        workdir / "standby", extra=["--replicaof", "127.0.0.1", str(primary.port)]
    ).start()
    sentinels = [Sentinel(workdir / f"sentinel-{i}", primary.port).start() for i in range(3)]
    try:
        await eventually(lambda: "slave0" in primary.cli("INFO", "replication"), 10)
        await eventually(lambda: all(s.primary_port_now() == primary.port for s in sentinels), 10)
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        url = f"redis+sentinel://{hosts}/tallow"
        one, two = start(REDIS_URL=url), start(REDIS_URL=url)
        async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
            await alice.join("failover"), await bob.join("failover")
            await alice.recv()
            primary.kill()
            return await _both_ways(alice, bob)
    finally:
        for process in (*sentinels, standby, primary):
            process.kill()


async def cluster_failover(start: Callable[..., TallowProcess], workdir: Path) -> float:
    """Kill the primary of Tallow's slot: seconds until a signal crosses replicas again."""
    cluster = RedisCluster(workdir / "cluster").start()
    try:
        one, two = start(REDIS_URL=cluster.url), start(REDIS_URL=cluster.url)
        async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
            await alice.join("failover"), await bob.join("failover")
            await alice.recv()
            cluster.primary_for(f"{cluster.key_prefix}:epoch").kill()
            return await _both_ways(alice, bob)
    finally:
        cluster.kill()


async def script_call_cost(calls: int = 3000, batch: int = 50) -> None:
    """Client CPU per EVALSHA through coredis one at a time, then in ScriptBatch pipelines."""
    from tallow.broker.redis_batch import ScriptBatch
    from tallow.broker.redis_connect import node_for, open_client
    from tallow.broker.redis_link import Endpoint

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(Path(folder) / "redis").start()
        try:
            url = parse_redis_url(redis.url)
            assert url is not None
            async with open_client(url, op_timeout=2.0) as client:
                script = client.register_script("return ARGV[1]")
                args = ["x" * 300, 1, 2, 3]
                await script(args=args)
                started = cpu()
                for _ in range(calls):
                    await script(args=args)
                _report(
                    "EVALSHA one at a time, client CPU", f"{(cpu() - started) / calls * 1e6:.0f} us"
                )

                async def locate() -> Endpoint:
                    assert url is not None
                    return await node_for(url, client, "cost", 2.0)

                runner = ScriptBatch(locate, 2.0)
                registered = runner.register("return ARGV[1]")
                async with trio.open_nursery() as nursery:
                    await nursery.start(runner.run)
                    await runner.call(registered, args)
                    started = cpu()
                    for _ in range(calls // batch):
                        async with trio.open_nursery() as callers:
                            for _ in range(batch):
                                callers.start_soon(runner.call, registered, args)
                    per_call = (cpu() - started) / (calls // batch * batch) * 1e6
                    _report(
                        f"EVALSHA {batch} per pipeline (ScriptBatch), client CPU",
                        f"{per_call:.0f} us",
                    )
                    nursery.cancel_scope.cancel()
        finally:
            redis.kill()


def deliver_cost(trees: list[str], frames: int = 22, runs: int = 3000, batch: int = 50) -> None:
    """Redis CPU per frame of a merged DELIVER run (module docstring), best of three."""
    import importlib.util
    import socket
    import threading

    from tallow.broker.resp import RespReader, encode

    context = ["tallow", "sender", 10_000, 64, 60_000, 10_000, "PUBLISH"]
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(Path(folder) / "redis").start()
        try:
            for index in range(frames):
                peer, room = f"p{index}", f"room{index}"
                redis.cli("HSET", f"tallow:peer:{peer}", "node", "B", "conn", "c", "room", room)
                redis.cli("HSET", f"tallow:room:{room}", peer, "{}")
            redis.cli("SADD", "tallow:joins", "B")
            subscriber = socket.create_connection(("127.0.0.1", redis.port))
            subscriber.sendall(encode("SUBSCRIBE", "tallow:ch:B"))

            def drain() -> None:  # replica B reads its channel (Redis must not buffer it all)
                while subscriber.recv(1 << 20):
                    pass

            threading.Thread(target=drain, daemon=True).start()
            link = socket.create_connection(("127.0.0.1", redis.port))

            def exchange(commands: list[bytes]) -> list[Any]:
                link.sendall(b"".join(commands))
                reader, replies = RespReader(), []
                while len(replies) < len(commands):
                    replies += reader.feed(link.recv(1 << 20))
                return replies

            for tree in trees or [str(Path(__file__).resolve().parents[1])]:
                spec = importlib.util.spec_from_file_location(
                    "scripts", Path(tree) / "tallow" / "broker" / "redis_scripts.py"
                )
                assert spec is not None and spec.loader is not None
                scripts = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(scripts)
                (sha,) = exchange([encode("SCRIPT", "LOAD", scripts.full(scripts.DELIVER))])
                arguments: list[str | bytes | int] = []
                for index in range(frames):
                    arguments += [f"room{index}", f"p{index}", SIGNAL, ""]
                command = encode("EVALSHA", sha, 1, "tallow:epoch", *context, *arguments)
                (results,) = exchange([command])
                assert results == [b"delivered"] * frames, results
                best = float("inf")
                for _ in range(3):
                    started = _redis_stats(redis)[0]
                    for _ in range(runs // batch):
                        exchange([command] * batch)
                    spent = _redis_stats(redis)[0] - started
                    best = min(best, spent / (runs // batch * batch * frames) * 1e6)
                label = f"DELIVER, {frames} frames per run, Redis CPU per frame"
                _report(f"{label} ({tree})" if trees else label, f"{best:.2f} us")
        finally:
            redis.kill()


class _Countdown:
    """An event that fires after ``count`` calls."""

    def __init__(self, count: int) -> None:
        self.left, self.done = count, trio.Event()

    def __call__(self, *_: object) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


class _Receiver:
    """A session's inbox that takes every frame and counts it down."""

    def __init__(self, arrived: _Countdown) -> None:
        self.arrived = arrived

    def offer(self, frame: bytes) -> bool:
        self.arrived()
        return True

    def supersede(self) -> None:
        pass

    def refused(self, result: object, re: object) -> None:
        pass


async def broker_path(per_tick: int, frames: int = 50_000) -> float:
    """CPU seconds per frame of the broker path alone (module docstring)."""
    from tallow.broker.base import Member
    from tallow.broker.redis import RedisBroker
    from tallow.config import load

    ticks = frames // per_tick
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(Path(folder) / "redis").start()
        try:
            sender, receiver = (
                RedisBroker(load({"REDIS_URL": redis.url, "TALLOW_NODE_ID": name}))
                for name in ("sender", "receiver")
            )
            arrived = _Countdown(ticks * per_tick)
            async with trio.open_nursery() as nursery:
                for broker in (sender, receiver):
                    await nursery.start(broker.run)
                for index in range(per_tick):
                    await sender.attach(f"s{index}", f"hs{index}", _Receiver(_Countdown(0)))
                    await receiver.attach(f"r{index}", f"hr{index}", _Receiver(arrived))
                    for broker, peer in ((sender, f"s{index}"), (receiver, f"r{index}")):
                        await broker.join(f"room{index}", Member(peer, peer, {}), 2, b"{}")
                started = time.process_time()
                for _ in range(ticks):
                    results = _Countdown(per_tick)
                    for index in range(per_tick):
                        sender.deliver(f"room{index}", f"r{index}", SIGNAL, results, ("", None))
                    await results.done.wait()
                await arrived.done.wait()
                spent = time.process_time() - started
                nursery.cancel_scope.cancel()
            return spent / (ticks * per_tick)
        finally:
            redis.kill()


def broker_path_trees(trees: list[str], per_tick: int) -> None:
    """--broker-path, alternated over source trees (each run a process of its own)."""
    import subprocess
    import sys

    if not trees:
        _report(
            f"broker path, {per_tick} per tick, CPU per frame",
            f"{trio.run(broker_path, per_tick) * 1e6:.1f} us",
        )
        return
    # Each run: this file loaded by its path, with the tree's tallow and harness on the path.
    child = (
        "import importlib.util, sys, trio\n"
        f"spec = importlib.util.spec_from_file_location('fanout', {str(Path(__file__))!r})\n"
        "fanout = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(fanout)\n"
        f"print(trio.run(fanout.broker_path, {per_tick}))\n"
    )
    measured: dict[str, list[float]] = {tree: [] for tree in trees}
    for _ in range(3):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": tree}
            output = subprocess.run(
                [sys.executable, "-c", child],
                cwd=tree,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            measured[tree].append(float(output.stdout.split()[-1]))
    for tree, seconds in measured.items():
        _report(
            f"broker path, {per_tick} per tick, CPU per frame ({tree})",
            f"{statistics.median(seconds) * 1e6:.1f} us",
        )


LAYOUTS = (
    "embedded broker",
    "Redis, same replica",
    "Redis, across replicas",
    "Redis Cluster, across replicas",
)


def relay(args: argparse.Namespace) -> None:
    """Alternated generator runs over the four layouts (and the source trees, with --trees);
    medians and ratios to the same tree's embedded broker."""
    from bench import servers  # the Node generator's harness (imports the test helpers)

    servers.ensure_node_packages()
    trees: list[str] = args.trees.split(",") if args.trees else [""]
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        workdir = Path(folder)
        redis = stack.enter_context(servers.redis(workdir / "redis"))
        cluster = RedisCluster(workdir / "cluster").start()
        stack.callback(cluster.kill)
        primaries = cluster.primary_nodes()
        layouts: dict[str, dict[str, tuple[Any, Any, list[RedisServer]]]] = {}
        for index, tree in enumerate(trees):
            # Each tree's replicas run its own code (PYTHONPATH first) and keep their own keys.
            own = {"PYTHONPATH": tree, "TALLOW_REDIS_PREFIX": f"tallow{index}"} if tree else {}
            place = workdir / f"tree-{index}"

            def replica(
                name: str, url: str | None = None, own: dict[str, str] = own, place: Path = place
            ) -> Any:
                env = {**own, "REDIS_URL": url} if url else own
                return stack.enter_context(servers.tallow(place / name, env))

            memory = replica("memory")
            one, two = replica("one", redis.url), replica("two", redis.url)
            three, four = replica("three", cluster.url), replica("four", cluster.url)
            layouts[tree] = {
                LAYOUTS[0]: (memory, memory, [redis]),
                LAYOUTS[1]: (one, one, [redis]),
                LAYOUTS[2]: (one, two, [redis]),
                LAYOUTS[3]: (three, four, primaries),
            }
        for run in range(args.runs):
            for tree in trees:
                for layout, (first, second, nodes) in layouts[tree].items():
                    sample = _relay_run(servers, args, first, second, nodes)
                    figures.setdefault((tree, layout), []).append(sample)
                    _report(
                        f"run {run + 1}, {_label(tree, layout)}, {args.pairs} pairs",
                        f"{sample['rate']:.0f} msg/s  p99 {sample['p99']} ms  Tallow CPU "
                        f"{sample['tallow_us']:.0f} us/msg  Redis CPU "
                        f"{sample['redis_us']:.1f} us/msg  load {os.getloadavg()[0]:.2f}",
                    )
    for tree in trees:
        base = statistics.median(sample["rate"] for sample in figures[tree, LAYOUTS[0]])
        base_p99 = statistics.median(sample["p99"] for sample in figures[tree, LAYOUTS[0]])
        for layout in LAYOUTS:
            samples = figures[tree, layout]
            rate = statistics.median(sample["rate"] for sample in samples)
            p99 = statistics.median(sample["p99"] for sample in samples)
            tallow_us = statistics.median(sample["tallow_us"] for sample in samples)
            redis_us = statistics.median(sample["redis_us"] for sample in samples)
            _report(
                f"median, {_label(tree, layout)}",
                f"{rate:.0f} msg/s ({rate / base:.2f}x)  p99 {p99:.1f} ms ({p99 / base_p99:.2f}x)"
                f"  Tallow CPU {tallow_us:.0f} us/msg  Redis CPU {redis_us:.1f} us/msg",
            )


def _label(tree: str, layout: str) -> str:
    return f"{tree}: {layout}" if tree else layout


def _relay_run(
    servers: Any, args: argparse.Namespace, first: Any, second: Any, nodes: list[RedisServer]
) -> dict[str, float]:
    """One generator run between ``first`` and ``second``: its rate, p99 and CPU per message."""
    generator = ["rate", "--protocol", "tallow", "--url", first.ws_url, "--url2", second.ws_url]
    generator += ["--pairs", str(args.pairs), "--seconds", str(args.seconds), "--warmup", "2"]
    generator += ["--payload", "300", "--inflight", "1", "--connect-timeout", "300"]
    pids = {first.pid, second.pid}
    marks: dict[str, tuple[float, float]] = {}

    def on_event(event: dict[str, Any]) -> None:
        tallow_cpu = sum(servers.cpu_seconds(pid) for pid in pids)
        marks[event["event"]] = (tallow_cpu, _redis_stats(*nodes)[0])

    result = servers.run_generator(generator, on_event)
    relayed = result["relayed_messages"]
    tallow_cpu, redis_cpu = (
        after - before for after, before in zip(marks["stop"], marks["start"], strict=True)
    )
    return {
        "rate": result["messages_per_second"],
        "p99": result["rtt_ms"]["p99"],
        "tallow_us": tallow_cpu / relayed * 1e6,
        "redis_us": redis_cpu / relayed * 1e6,
    }


async def main(args: argparse.Namespace) -> None:
    from bench.servers import cpu_seconds  # the CPU reader the other benchmarks use

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        redis = RedisServer(workdir / "redis").start()
        started: list[TallowProcess] = []

        def start(**env: str) -> TallowProcess:
            settings = {"REDIS_URL": redis.url, "TALLOW_RATE_LIMIT": "0", "LOG_LEVEL": "warning"}
            server = launch(workdir, env={**settings, **env})
            started.append(server)
            return server

        try:
            memory = launch(workdir, env={"TALLOW_RATE_LIMIT": "0", "LOG_LEVEL": "warning"})
            started.append(memory)
            one, two = start(), start()
            n = args.samples
            _report(
                "latency, embedded broker, same process",
                _percentiles(await latency(memory.ws_url, memory.ws_url, n)),
            )
            _report(
                "latency, Redis, same replica",
                _percentiles(await latency(one.ws_url, one.ws_url, n)),
            )
            _report(
                "latency, Redis, across replicas",
                _percentiles(await latency(one.ws_url, two.ws_url, n)),
            )
            for name, servers in (
                ("embedded broker, one process", (memory, memory)),
                ("Redis, one replica", (one, one)),
                ("Redis, across two replicas", (one, two)),
            ):
                pids = {server.process.pid for server in servers}
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
                redis_before = _redis_stats(redis)
                rate, relayed = await throughput(
                    (servers[0].ws_url, servers[1].ws_url), args.pairs, args.seconds
                )
                cpu = (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / relayed
                redis_cpu, commands = (
                    after - before
                    for after, before in zip(_redis_stats(redis), redis_before, strict=True)
                )
                _report(
                    f"throughput, {name}, {args.pairs} pairs",
                    f"{rate:.0f} signals/s; Tallow CPU {cpu * 1e6:.0f} us/signal",
                )
                if servers[0] is not memory:
                    _report(
                        f"  Redis for it: {name}",
                        f"{redis_cpu / relayed * 1e6:.0f} us CPU, "
                        f"{commands / relayed:.2f} commands per signal",
                    )
            kib, redis_bytes = await idle_peers(
                start(TALLOW_MAX_CONNECTIONS_PER_IP="0"), redis, 1000
            )
            _report("memory per idle peer (1000 joined), replica", f"{kib:.1f} KiB")
            _report("memory per idle peer (1000 joined), Redis", f"{redis_bytes:.0f} bytes")
            for server in started:
                server.terminate()  # a goodbye, so no dead replica skews what follows
            started.clear()
            for attempt in range(3):
                seconds = await dead_replica(start, f"dead-{attempt}")
                _report(
                    f"dead replica noticed (SIGKILL, grace 0), run {attempt + 1}",
                    f"{seconds:.2f} s",
                )
            seconds = await redis_restart(start, redis)
            _report("recovery after Redis restart (from Redis back, both ways)", f"{seconds:.2f} s")
            seconds = await sentinel_failover(start, workdir)
            _report(
                "recovery after Sentinel failover (from primary kill, both ways)",
                f"{seconds:.2f} s",
            )
            seconds = await cluster_failover(start, workdir)
            _report(
                "recovery after Redis Cluster failover (from primary kill, both ways)",
                f"{seconds:.2f} s",
            )
        finally:
            for server in started:
                server.kill()
            redis.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="latency samples per case")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run length")
    parser.add_argument("--pairs", type=int, default=20, help="sender/receiver pairs")
    parser.add_argument("--relay", action="store_true", help="only the generator comparison")
    parser.add_argument("--runs", type=int, default=3, help="alternated runs (--relay)")
    parser.add_argument(
        "--trees",
        help="comma-separated source trees (checkouts) to alternate run by run (--relay, "
        "--deliver-cost, --broker-path): an A/B",
    )
    parser.add_argument("--script-cost", action="store_true", help="only EVALSHA client CPU")
    parser.add_argument(
        "--deliver-cost", action="store_true", help="only Redis CPU per frame of DELIVER"
    )
    parser.add_argument(
        "--broker-path", action="store_true", help="only the broker path's CPU, in process"
    )
    parser.add_argument("--per-tick", type=int, default=20, help="signals per tick (--broker-path)")
    arguments = parser.parse_args()
    if arguments.relay:
        relay(arguments)
    elif arguments.script_cost:
        trio.run(script_call_cost)
    elif arguments.broker_path:
        broker_path_trees(arguments.trees.split(",") if arguments.trees else [], arguments.per_tick)
    elif arguments.deliver_cost:
        deliver_cost(arguments.trees.split(",") if arguments.trees else [])
    else:
        trio.run(main, arguments)
