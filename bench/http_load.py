"""The HTTP side under load: Tallow's probe and UI next to a bare hypercorn app on Trio, by wrk.

    .venv/bin/python bench/http_load.py [--runs 3] [--seconds 8] [--output docs/performance.md]

Every run starts a fresh server; runs alternate Tallow and the bare app (bench/bare_app.py:
hypercorn on Trio with an app that only answers), so a busy machine slows both alike. wrk keeps
``--connections`` kept-alive connections busy on one thread. The difference between the two is
what Tallow's listener, routing, security headers, request ids, logs and metrics cost.
Needs `wrk` (Debian package).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import report
from servers import BENCH, ROOT, TALLOW_ENV, _wait_http, cpu_seconds

from harness.processes import free_port, launch

SECTION = "## The HTTP side (bench/http_load.py)"
PATHS = ("/api/health", "/")
HYPERCORN = Path(sys.executable).with_name("hypercorn")


@contextmanager
def tallow(workdir: Path) -> Iterator[tuple[str, int]]:
    running = launch(workdir, env={**TALLOW_ENV})
    try:
        yield running.url, running.process.pid
    finally:
        running.kill()


@contextmanager
def bare(workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [str(HYPERCORN), "--worker-class", "trio", "--bind", f"127.0.0.1:{port}"]
    with (workdir / f"bare-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "bare_app:app"], cwd=BENCH, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/api/health", process, "hypercorn")
        yield url, process.pid
    finally:
        process.kill()
        process.wait()


SERVERS = {"Tallow": tallow, "bare hypercorn": bare}


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) of one wrk run; every answer must be a 2xx."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    figures = {"rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)[0])}
    for percentile in ("50", "99"):
        value, unit = _find(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)$", out)
        figures[f"p{percentile}"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return figures


def _find(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return found.groups()


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, float]]]]:
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {path: [] for path in PATHS} for name in SERVERS
    }
    with tempfile.TemporaryDirectory(prefix="tallow-http-") as scratch:
        for run in range(args.runs):
            for name, start in SERVERS.items():
                with start(Path(scratch)) as (url, pid):
                    for path in PATHS:
                        wrk(url + path, 1, args.connections)  # warm-up
                        cpu = cpu_seconds(pid)
                        figures = wrk(url + path, args.seconds, args.connections)
                        figures["cpu"] = (cpu_seconds(pid) - cpu) / args.seconds
                        samples[name][path].append(figures)
                        print(f"run {run + 1} {name:15} {path:12} {figures}", file=sys.stderr)
    return samples


def section(samples: dict[str, Any], args: argparse.Namespace, began: float, load: float) -> str:
    machine = report.machine()
    command = " ".join([".venv/bin/python bench/http_load.py", *sys.argv[1:]])
    lines = [
        SECTION,
        "",
        f"Command: `{command}` ({(time.monotonic() - began) / 60:.1f} min). Measured "
        f"{machine['date']} on {machine['cores']} cores of {machine['cpu']}, Python "
        f"{machine['python']} (Tallow at `{machine['revision']}`), wrk with {args.connections} "
        f"kept-alive connections on one thread, {args.seconds} s per run after a 1 s warm-up, "
        f"medians of {args.runs} alternating runs. Load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (shared cores: read the ratios).",
        "",
        "| path | server | requests/s | latency p50 / p99 ms | server CPU | requests per "
        "server CPU-second |",
        "|---|---|---|---|---|---|",
    ]
    for path in PATHS:
        for name in SERVERS:
            runs = samples[name][path]

            def median(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(run[key] for run in runs)

            per_cpu = median("rps") / max(median("cpu"), 0.01)
            lines.append(
                f"| `{path}` | {name} | {median('rps'):,.0f} | {median('p50'):.2f} / "
                f"{median('p99'):.2f} | {median('cpu'):.0%} | {per_cpu:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args()
    began, load = time.monotonic(), os.getloadavg()[0]
    text = section(measure(args), args, began, load)
    print(text)
    report.write_section(args.output, text)


if __name__ == "__main__":
    main()
