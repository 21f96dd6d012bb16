"""Turn bench/compare.py's samples into its section of docs/performance.md and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from servers import BENCH

SECTION = "## Side by side with PeerJS server (bench/compare.py)"
NAMES = ("Tallow", "PeerJS")
BARE = "Bare relay"  # bench/bare_relay.py, measured with --bare-relay


def _package_version(name: str) -> str:
    manifest = BENCH / "node_modules" / name / "package.json"
    return json.loads(manifest.read_text())["version"]


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    from tallow import __version__  # importable: servers put the repository first on sys.path

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip(),
        "peer": _package_version("peer"),
        "ws": _package_version("ws"),
        "tallow": __version__,
        # The tree measured: a commit, "-dirty" when the work tree had changes on top of it.
        "revision": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=BENCH
        ).stdout.strip(),
        "load_before": round(os.getloadavg()[0], 2),
    }


def _median(samples: list[dict[str, Any]], *keys: str) -> float:
    values = []
    for sample in samples:
        value: Any = sample
        for key in keys:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def _figures(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "mps": _median(samples, "messages_per_second"),
        "p50": _median(samples, "rtt_ms", "p50"),
        "p99": _median(samples, "rtt_ms", "p99"),
        "max": max(sample["rtt_ms"]["max"] for sample in samples),
        "server_cpu": _median(samples, "server_cpu"),
        # Messages per second of server CPU: what a starved run (busy shared cores) still shows.
        "per_cpu": statistics.median(
            s["messages_per_second"] / s["server_cpu"] for s in samples if s["server_cpu"] > 0
        ),
        "user_us": _median(samples, "server_user_us"),
        "system_us": _median(samples, "server_system_us"),
        "generator_cpu": _median(samples, "generator_cpu"),
        "errors": sum(sum(sample["errors"].values()) for sample in samples),
    }


def rate_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pair count: medians for each server and the Tallow/PeerJS ratios."""
    rows = []
    for pairs in sorted({sample["pairs"] for sample in samples}):
        row: dict[str, Any] = {"pairs": pairs}
        for name in NAMES:
            group = [s for s in samples if s["pairs"] == pairs and s["server"] == name]
            row[name] = _figures(group)
        row["mps_ratio"] = row["Tallow"]["mps"] / row["PeerJS"]["mps"]
        row["p99_ratio"] = row["Tallow"]["p99"] / row["PeerJS"]["p99"]
        row["cpu_ratio"] = row["Tallow"]["per_cpu"] / row["PeerJS"]["per_cpu"]
        row["spread"] = _run_ratios(samples, pairs)
        bare = [s for s in samples if s["pairs"] == pairs and s["server"] == BARE]
        if bare:
            row[BARE] = _figures(bare)
        rows.append(row)
    return rows


def _run_ratios(samples: list[dict[str, Any]], pairs: int) -> dict[str, tuple[float, float]]:
    """The lowest and highest Tallow/PeerJS ratio of single runs (run k of one against run k of
    the other, which ran right after it): how far the machine's noise moves a ratio."""
    runs: dict[int, dict[str, dict[str, Any]]] = {}
    for sample in samples:
        if sample["pairs"] == pairs:
            runs.setdefault(sample["run"], {})[sample["server"]] = sample
    paired = [run for run in runs.values() if all(name in run for name in NAMES)]
    ratios = {
        "mps": [
            r["Tallow"]["messages_per_second"] / r["PeerJS"]["messages_per_second"] for r in paired
        ],
        "p99": [r["Tallow"]["rtt_ms"]["p99"] / r["PeerJS"]["rtt_ms"]["p99"] for r in paired],
    }
    return {key: (min(values), max(values)) for key, values in ratios.items() if values}


def _range(spread: dict[str, tuple[float, float]], key: str) -> str:
    low, high = spread.get(key, (float("nan"), float("nan")))
    return f"runs x{low:.2f}-{high:.2f}"


def _rate_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| pairs (connections) | Tallow msg/s | PeerJS msg/s | msg/s ratio "
        "| Tallow RTT p50 / p99 / max ms | PeerJS RTT p50 / p99 / max ms | p99 ratio "
        "| CPU: Tallow / PeerJS / generator | msg per server CPU-second: Tallow / PeerJS (ratio) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, p = row["Tallow"], row["PeerJS"]
        lines.append(
            f"| {row['pairs']} ({2 * row['pairs']}) | {t['mps']:,.0f} | {p['mps']:,.0f} "
            f"| **{row['mps_ratio']:.2f}** | {t['p50']:.2f} / {t['p99']:.2f} / {t['max']:.1f} "
            f"| {p['p50']:.2f} / {p['p99']:.2f} / {p['max']:.1f} | **{row['p99_ratio']:.2f}** "
            f"| {t['server_cpu']:.0%} / {p['server_cpu']:.0%} / "
            f"{max(t['generator_cpu'], p['generator_cpu']):.0%} "
            f"| {t['per_cpu']:,.0f} / {p['per_cpu']:,.0f} ({row['cpu_ratio']:.2f}) |"
        )
    errors = {name: sum(row[name]["errors"] for row in rows) for name in NAMES}
    lines += ["", f"Errors and unexpected closes over all runs: {errors}."]
    return lines


def _bare_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The bare relay beside both: how much of Tallow's cost per message is the interpreter's
    and Trio's, how much Tallow's own."""
    rows = [row for row in rows if BARE in row]
    if not rows:
        return []
    lines = [
        "### The bare relay: what Trio and this interpreter cost before Tallow's work",
        "",
        "`bench/bare_relay.py` (measured with `--bare-relay`, in the same alternation): Tallow's "
        "frame decoder and encoders, one task per connection waiting with Trio's "
        "`wait_readable`, each signal written straight into its receiver's socket, and nothing "
        "else (no rooms, limits, rate limits, pings, ordering, resume, metrics or logs).",
        "",
        "| pairs | bare relay msg/s (p99 ms) | msg per server CPU-second: bare relay / Tallow / "
        "PeerJS | Tallow / bare relay | bare relay / PeerJS | server CPU per message, user + "
        "system us: bare relay / Tallow / PeerJS |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        b, t, p = row[BARE], row["Tallow"], row["PeerJS"]
        split = " / ".join(f"{f['user_us']:.1f} + {f['system_us']:.1f}" for f in (b, t, p))
        lines.append(
            f"| {row['pairs']} | {b['mps']:,.0f} ({b['p99']:.2f}) "
            f"| {b['per_cpu']:,.0f} / {t['per_cpu']:,.0f} / {p['per_cpu']:,.0f} "
            f"| {t['per_cpu'] / b['per_cpu']:.2f} | {b['per_cpu'] / p['per_cpu']:.2f} | {split} |"
        )
    lines += [
        "",
        "User time is the server's own code (interpreter or JIT, libraries); system time is the "
        "kernel's work for it (the reads, the writes that deliver to the generator, the waits).",
    ]
    return [*lines, ""]


def _memory_table(samples: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| server | connections held | opened in | RSS before | RSS with them open "
        "| per idle connection | closed by the server |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s['server']} | {s['connections']:,} | {s['open_seconds']:.1f} s "
            f"| {s['rss_before'] / 2**20:.1f} MiB | {s['rss_open'] / 2**20:.1f} MiB "
            f"| **{s['bytes_per_connection'] / 1024:.1f} KiB** | {s['dropped']} |"
        )
    return lines


def _redis_lines(data: dict[str, Any]) -> list[str]:
    if data.get("redis") is None:
        reason = data.get("redis_error", "skipped (--redis-pairs empty)")
        return [f"Pending: not measured in this run: {reason}"]
    lines = [
        "Two Tallow replicas with `REDIS_URL` on one redis-server (all on this machine). "
        "*same replica*: both peers of a pair on replica A; *across*: the first peer on A, the "
        "second on B, so every signal crosses Redis. Medians of the alternating runs.",
        "",
        "| pairs | layout | msg/s | RTT p50 ms | RTT p99 ms | RTT max ms | CPU (both replicas) |",
        "|---|---|---|---|---|---|---|",
    ]
    failures = []
    for pairs in sorted({s["pairs"] for s in data["redis"]}):
        for layout in ("same replica", "across"):
            group = [s for s in data["redis"] if s["pairs"] == pairs and s["layout"] == layout]
            failed = [s["failed"] for s in group if "failed" in s]
            failures += [f"{pairs} pairs, {layout}: {reason}" for reason in failed]
            if len(failed) == len(group):
                lines.append(f"| {pairs} | {layout} | failed | | | | |")
                continue
            f = _figures([s for s in group if "failed" not in s])
            lines.append(
                f"| {pairs} | {layout} | {f['mps']:,.0f} | {f['p50']:.2f} | {f['p99']:.2f} "
                f"| {f['max']:.1f} | {f['server_cpu']:.0%} |"
            )
    if failures:
        lines += ["", "Failed runs (left out of the medians):", ""]
        lines += [f"- {failure}" for failure in failures]
    return lines


def _targets(rows: list[dict[str, Any]], memory: list[dict[str, Any]], want: int) -> list[str]:
    """The relay core's targets: at least PeerJS's rate (p99 no worse) and work per CPU-second
    at every pair count, at most 0.7x its memory per idle connection, connections opened at
    least as fast, and the whole idle load held."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = []
    for row in rows:
        ok = row["mps_ratio"] >= 1 and row["p99_ratio"] <= 1
        lines.append(
            f"- Relay at {row['pairs']} pair(s), Tallow >= PeerJS with p99 no worse: "
            f"{verdict(ok)} (msg/s x{row['mps_ratio']:.2f}, {_range(row['spread'], 'mps')}; "
            f"p99 x{row['p99_ratio']:.2f}, {_range(row['spread'], 'p99')})."
        )
    ratios = ", ".join(f"x{row['cpu_ratio']:.2f} at {row['pairs']}" for row in rows)
    lines.append(
        "- Relayed messages per server CPU-second >= PeerJS's: "
        f"{verdict(all(row['cpu_ratio'] >= 1 for row in rows))} ({ratios})."
    )
    by_server = {s["server"]: s for s in memory}
    if len(by_server) == 2:
        tallow, peerjs = by_server["Tallow"], by_server["PeerJS"]
        ratio = tallow["bytes_per_connection"] / peerjs["bytes_per_connection"]
        lines.append(
            f"- Memory per idle connection <= 0.7x PeerJS's: {verdict(ratio <= 0.7)} "
            f"(x{ratio:.2f}: {tallow['bytes_per_connection'] / 1024:.1f} KiB vs "
            f"{peerjs['bytes_per_connection'] / 1024:.1f} KiB)."
        )
        faster = tallow["open_seconds"] <= peerjs["open_seconds"]
        lines.append(
            f"- {want:,} connections opened at least as fast as PeerJS accepts them: "
            f"{verdict(faster)} ({tallow['open_seconds']:.1f} s vs {peerjs['open_seconds']:.1f} s)."
        )
    for s in memory:
        if s["server"] == "Tallow":
            held = s["connections"] == want and s["dropped"] == 0
            lines.append(
                f"- One node holds {want:,} concurrent connections: {verdict(held)} "
                f"({s['connections']:,} open, {s['dropped']} closed by the server; the "
                "per-address limit lifted because one generator address opens them all)."
            )
    return lines


def markdown(data: dict[str, Any], plot_name: str) -> str:
    m, args = data["machine"], data["args"]
    rows = rate_rows(data["rates"])
    lines = [
        SECTION,
        "",
        f"Command: `{data['command']}` ({data['minutes']} min). Measured {m['date']} on "
        f"{m['cores']} cores of {m['cpu']}, Linux {m['kernel']}, Python {m['python']} "
        f"(Tallow {m['tallow']} at `{m['revision']}`), Node {m['node']} (PeerJS server "
        f"`peer` {m['peer']}, `ws` {m['ws']}). The cores are shared with other work: load "
        f"average {m['load_before']} at the start, {m['load_after']} at the end, so absolute "
        "figures are noisy; the ratios, from runs alternated Tallow, PeerJS, Tallow, ..., are "
        "the figures to read.",
        "",
        "Method:",
        "- One Node generator (`bench/loadgen.mjs`, `ws`) speaks both protocols. Each pair of "
        "peers is alone (a Tallow room each; PeerJS has no rooms, ids suffice); the first peer "
        f"keeps {args['inflight']} signal(s) of {args['payload']} B in flight to the second, "
        "which echoes each back: a closed loop where every returned echo is one round trip, "
        "two relayed messages, and frees the slot.",
        f"- Every run starts a fresh server, warms up {args['warmup']:g} s, then measures "
        f"{args['seconds']:g} s. Figures are medians of {args['runs']} runs (max: the largest "
        "of all runs). Ratios are Tallow / PeerJS: above 1 is better for msg/s and msg per "
        "CPU-second, below 1 is better for p99. *Against the targets* gives beside each median "
        "ratio the lowest and highest ratio of single runs (each Tallow run against the PeerJS "
        "run right after it): a target whose runs fall on both sides of 1 is a tie on this "
        "machine, whatever its verdict says.",
        "- CPU is the share of one core a process used during the measured window (for the "
        "generator, the higher of its medians against the two servers; below 100% it was not "
        "the bottleneck). Messages per server CPU-second divide the rate by the server's CPU "
        "share: when other work starves both servers of CPU, that figure still compares how "
        "much work each does per message.",
        "- Tallow runs `python -m tallow serve` with `TALLOW_RATE_LIMIT=0`, "
        "`TALLOW_MAX_CONNECTIONS_PER_IP=0`, `LOG_LEVEL=warning`. PeerJS runs its own `peerjs` "
        "CLI with `--concurrent_limit 100000` (its default of 5000 would refuse the idle test; "
        "its `alive_timeout` only drops peers that send no HEARTBEAT, and the generator sends "
        "one every 5 s like PeerJS's own client).",
        "",
        "### Relayed messages per second and round trip",
        "",
        *_rate_table(rows),
        "",
        f"![Relayed messages/s and p99 round trip, Tallow and PeerJS server]({plot_name})",
        "",
        *_bare_lines(rows),
        f"### Memory per idle connection ({args['idle_connections']:,} connections)",
        "",
        "Resident memory (VmRSS of the server process and its children) with the connections "
        "open and identified (Tallow: `welcome` received; PeerJS: `OPEN` received) and idle, "
        "minus the resident memory before, after a first batch of 100 connections warmed the "
        "server up.",
        "",
        *(_memory_table(data["memory"]) if data["memory"] else ["Not measured in this run."]),
        "",
        "### Zipapp start-up",
        "",
    ]
    if data["startup"]:
        cold, warm = data["startup"]["cold"], data["startup"]["warm"]
        lines += [
            f"`dist/tallow.pyz` to its first healthy probe, medians of {len(cold)}: cold (empty "
            f"`SHIV_ROOT`) **{statistics.median(cold):.2f} s**, warm (unpacked) "
            f"**{statistics.median(warm):.2f} s** (measured with bench/core.py's function).",
        ]
    else:
        lines.append("Not measured in this run (`--startup-runs 0`).")
    lines += [
        "",
        "### Across replicas through Redis",
        "",
        *_redis_lines(data),
        "",
        "### Against the targets",
        "",
        *_targets(rows, data["memory"], args["idle_connections"]),
    ]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    rows = rate_rows(data["rates"])
    labels = [f"{row['pairs']} pairs" for row in rows]
    positions = range(len(rows))
    width = 0.38
    figure, panels = pyplot.subplots(1, 3, figsize=(14, 4.2), dpi=100)
    shown = (
        ("mps", "Relayed messages/s (higher is better)"),
        ("p99", "Round trip p99, ms, log scale (lower is better)"),
        ("per_cpu", "Messages per server CPU-second (higher is better)"),
    )
    for axes, (key, title) in zip(panels, shown, strict=True):
        for offset, name, colour in (
            (-width / 2, "Tallow", "#2a7f62"),
            (width / 2, "PeerJS", "#888"),
        ):
            xs = [x + offset for x in positions]
            axes.bar(xs, [row[name][key] for row in rows], width, label=name, color=colour)
        axes.set_title(title, fontsize=10)
        axes.set_xticks(list(positions), labels)
        axes.legend()
        axes.grid(axis="y", alpha=0.3)
    panels[1].set_yscale("log")
    figure.suptitle(
        f"Same machine ({data['machine']['cores']} shared cores), one generator, "
        f"medians of {data['args']['runs']} alternating runs"
    )
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def write_section(path: Path, section: str) -> None:
    """Replace the section of `path` with `section`'s heading (its first line), keeping every
    other section as it is."""
    text = path.read_text() if path.exists() else "# Performance\n"
    heading = section.splitlines()[0]
    pattern = re.compile(re.escape(heading) + r".*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
