"""Tallow next to PeerJS server on the same machine, driven by one generator; writes the figures.

    .venv/bin/python bench/compare.py            # the full run, about 10-15 minutes on 2 cores

Installs the pinned npm packages of bench/ (`npm ci`), then measures, each figure against a fresh
server process:
- relayed messages/s and round-trip percentiles at 1, 100 and 1000 pairs, alternating Tallow and
  PeerJS run by run so that a busy machine slows both alike; medians and Tallow/PeerJS ratios;
- resident memory per idle connection with 10,000 connections open, for both servers;
- zipapp cold and warm start (bench/core.py's measurement);
- round trips between two Tallow replicas through Redis next to round trips within one replica.
Then it replaces its own section of docs/performance.md (other sections stay) and draws the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import report
from servers import (
    ROOT,
    Server,
    bare_relay,
    cpu_times,
    ensure_node_packages,
    peerjs,
    redis,
    rss_bytes,
    run_generator,
    tallow,
)

Starter = Callable[[Path], AbstractContextManager[Server]]
SERVERS: list[tuple[str, Starter]] = [("Tallow", tallow), ("PeerJS", peerjs)]
PROTOCOL = {"Tallow": "tallow", "PeerJS": "peerjs", report.BARE: "tallow"}
SETTLE_SECONDS = 2.0  # after the last connection opens, before reading resident memory


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rate_args(
    args: argparse.Namespace, protocol: str, pairs: int, url: str, url2: str
) -> list[str]:
    return [
        "rate",
        "--protocol",
        protocol,
        "--url",
        url,
        "--url2",
        url2,
        "--pairs",
        str(pairs),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--payload",
        str(args.payload),
        "--inflight",
        str(args.inflight),
        "--connect-timeout",
        "300",
    ]


def measure_rate(generator_args: list[str], pids: list[int]) -> dict[str, Any]:
    """One generator run; adds the servers' CPU use over exactly the measured window: its share
    of a core, and its user and system time per relayed message (what the kernel spends next
    to what the server's own code does)."""
    marks: dict[str, tuple[float, float]] = {}

    def on_event(event: dict[str, Any]) -> None:
        times = [cpu_times(pid) for pid in pids]
        marks[event["event"]] = (sum(t[0] for t in times), sum(t[1] for t in times))

    result = run_generator(generator_args, on_event)
    user, system = (marks["stop"][i] - marks["start"][i] for i in (0, 1))
    result["server_cpu"] = round((user + system) / result["seconds"], 3)
    relayed = max(result["relayed_messages"], 1)
    result["server_user_us"] = round(user * 1e6 / relayed, 2)
    result["server_system_us"] = round(system * 1e6 / relayed, 2)
    result["load"] = round(os.getloadavg()[0], 2)
    return result


def relay_rates(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    samples = []
    servers = [*SERVERS, (report.BARE, bare_relay)] if args.bare_relay else SERVERS
    for pairs in args.pairs:
        for run in range(args.runs):
            for name, start in servers:
                with start(workdir / name) as server:
                    url = server.ws_url
                    result = measure_rate(
                        rate_args(args, PROTOCOL[name], pairs, url, url), [server.pid]
                    )
                samples.append({"server": name, "run": run, **result})
                log(
                    f"{name:10} {pairs:5} pairs run {run + 1}: "
                    f"{result['messages_per_second']:9.0f} msg/s  p99 {result['rtt_ms']['p99']} ms"
                    f"  cpu server {result['server_cpu']} generator {result['generator_cpu']}"
                    f"  load {result['load']}"
                )
    return samples


def idle_memory(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Resident memory added per open, idle connection (connected and identified, no traffic)."""
    samples = []
    for name, start in SERVERS:
        with start(workdir / name) as server:
            samples.append(_idle_sample(server, PROTOCOL[name], args.idle_connections))
        log(f"{name:7} idle: {samples[-1]['bytes_per_connection']} B/connection")
    return samples


def _idle_sample(server: Server, protocol: str, connections: int) -> dict[str, Any]:
    idle = ["idle", "--protocol", protocol, "--url", server.ws_url, "--hold", "120"]
    # A first small batch loads whatever each server loads lazily on first use.
    run_generator([*idle, "--connections", "100"], lambda _: time.sleep(0.5))
    time.sleep(SETTLE_SECONDS)
    before = rss_bytes(server.pid)
    held: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        time.sleep(SETTLE_SECONDS)
        held["rss"] = rss_bytes(server.pid)
        held["seconds"] = event["seconds"]

    # Opening 10,000 takes a minute or more on a busy 2-core machine: bound it generously.
    result = run_generator(
        [*idle, "--connections", str(connections), "--connect-timeout", "400"],
        on_event,
        timeout=600,
    )
    return {
        "server": server.name,
        "connections": result["connections"],
        "dropped": result["dropped"],
        "open_seconds": held["seconds"],
        "rss_before": before,
        "rss_open": held["rss"],
        "bytes_per_connection": round((held["rss"] - before) / result["connections"]),
    }


def start_up(args: argparse.Namespace) -> dict[str, list[float]]:
    """Zipapp cold (empty SHIV_ROOT) and warm start to the first healthy probe."""
    import core  # bench/core.py: the same measurement as its Core server section

    if not core.ZIPAPP.exists():
        subprocess.run([str(ROOT / "scripts" / "build-zipapp.sh")], check=True)
    figures: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(args.startup_runs):
        with tempfile.TemporaryDirectory() as shiv_root:
            zipapp = [sys.executable, str(core.ZIPAPP)]
            figures["cold"].append(core.start_to_healthy(zipapp, {"SHIV_ROOT": shiv_root}))
            figures["warm"].append(core.start_to_healthy(zipapp, {"SHIV_ROOT": shiv_root}))
    log(f"start-up: {figures}")
    return figures


def across_replicas(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Pairs inside one replica, then pairs split across two, both replicas on one Redis."""
    samples = []
    with ExitStack() as stack:
        broker = stack.enter_context(redis(workdir / "redis"))
        env = {"REDIS_URL": broker.url}
        first = stack.enter_context(tallow(workdir / "replica-a", env))
        second = stack.enter_context(tallow(workdir / "replica-b", env))
        pids = [first.pid, second.pid]
        for pairs in args.redis_pairs:
            for run in range(args.runs):
                for layout, url2 in (("same replica", first.ws_url), ("across", second.ws_url)):
                    generator = rate_args(args, "tallow", pairs, first.ws_url, url2)
                    try:
                        result = measure_rate(generator, pids)
                    except RuntimeError as failure:  # one failed run is a figure too
                        reason = str(failure).split("): ", 1)[-1]
                        samples.append({"layout": layout, "pairs": pairs, "failed": reason})
                        log(f"redis {layout:12} {pairs:4} pairs: failed: {reason}")
                        continue
                    samples.append({"layout": layout, "run": run, **result})
                    log(
                        f"redis {layout:12} {pairs:4} pairs: "
                        f"{result['messages_per_second']:8.0f} msg/s  "
                        f"p50 {result['rtt_ms']['p50']} p99 {result['rtt_ms']['p99']} ms"
                    )
    return samples


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=counts, default=[1, 100, 1000])
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per figure")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--payload", type=int, default=300, help="signal payload bytes")
    parser.add_argument("--inflight", type=int, default=1, help="signals in flight per pair")
    parser.add_argument(
        "--bare-relay",
        action="store_true",
        help="also run bench/bare_relay.py in the relay runs: Trio's own cost per message",
    )
    parser.add_argument("--idle-connections", type=int, default=10_000, help="0 skips")
    parser.add_argument("--startup-runs", type=int, default=3, help="0 skips the zipapp")
    parser.add_argument("--redis-pairs", type=counts, default=[1, 100], help="empty skips")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--plot", type=Path, help="default: performance.png beside --output")
    parser.add_argument("--raw", type=Path, help="also write every sample as JSON here")
    parser.add_argument(
        "--from-raw", type=Path, help="measure nothing: rewrite the report from a --raw file"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.plot = args.plot or args.output.with_name("performance.png")
    if args.from_raw:
        write_report(json.loads(args.from_raw.read_text()), args)
        return
    # 1000 pairs are 2000 sockets on each side, the idle test 10,000: lift the soft fd limit
    # (the servers and the generator inherit it).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_node_packages()
    began = time.monotonic()
    # The command that reproduces the figures (--raw only keeps a copy of them elsewhere).
    arguments = sys.argv[1:]
    shown = [
        arg
        for index, arg in enumerate(arguments)
        if not arg.startswith("--raw") and (index == 0 or arguments[index - 1] != "--raw")
    ]
    command = shlex.join([".venv/bin/python", "bench/compare.py", *shown])
    data: dict[str, Any] = {"machine": report.machine(), "args": vars(args), "command": command}
    with tempfile.TemporaryDirectory(prefix="tallow-compare-") as scratch:
        workdir = Path(scratch)
        data["rates"] = relay_rates(args, workdir)
        data["memory"] = idle_memory(args, workdir) if args.idle_connections else []
        data["startup"] = start_up(args) if args.startup_runs else None
        data["redis"] = None
        if args.redis_pairs:
            try:
                data["redis"] = across_replicas(args, workdir)
            except (RuntimeError, TimeoutError) as failure:  # the broker is still being built
                data["redis_error"] = str(failure).strip()[:400]
                log(f"across replicas: not measured: {data['redis_error']}")
    data["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    data["minutes"] = round((time.monotonic() - began) / 60, 1)
    if args.raw:
        args.raw.write_text(json.dumps(data, indent=1, default=str))
    write_report(data, args)


def write_report(data: dict[str, Any], args: argparse.Namespace) -> None:
    report.plot(data, args.plot)
    report.write_section(args.output, report.markdown(data, args.plot.name))
    log(f"wrote {args.output} and {args.plot} ({data['minutes']} min of measuring)")


if __name__ == "__main__":
    main()
