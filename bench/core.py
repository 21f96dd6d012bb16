"""Core figures of one Tallow process: zipapp size, start-up time, two-peer signaling rate.

    .venv/bin/python bench/core.py [--runs 3] [--output docs/performance.md]

Builds dist/tallow.pyz if it is missing, then measures, alternating the variants in each run so
that a busy machine slows them alike, and prints medians as a Markdown section. With --output it
replaces that section in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import report  # noqa: E402  (bench/report.py: writes a section of docs/performance.md)

from harness.processes import free_port  # noqa: E402  (the same free-port helper the tests use)

ZIPAPP = ROOT / "dist" / "tallow.pyz"
SECTION = "## Core server (bench/core.py)"


def start_to_healthy(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning `command serve` to the first 200 from /api/health."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.005)
    finally:
        process.terminate()
        process.wait(30)


def two_peer_rate(inflight: int, seconds: float) -> dict[str, object]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tallow", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "TALLOW_RATE_LIMIT": "0", "LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.2)
        start_to_wait = time.perf_counter()
        while time.perf_counter() - start_to_wait < 30:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tallow",
                "bench",
                f"ws://127.0.0.1:{port}/signaling",
                "--pairs",
                "1",
                "--seconds",
                str(seconds),
                "--inflight",
                str(inflight),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout)
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if not ZIPAPP.exists():
        subprocess.run([str(ROOT / "scripts" / "build-zipapp.sh")], check=True)
    cold, warm, module = [], [], []
    rates: dict[int, list[dict[str, object]]] = {1: [], 16: []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as shiv_root:
            zipapp = [sys.executable, str(ZIPAPP)]
            cold.append(start_to_healthy(zipapp, {"SHIV_ROOT": shiv_root}))
            warm.append(start_to_healthy(zipapp, {"SHIV_ROOT": shiv_root}))
        module.append(start_to_healthy([sys.executable, "-m", "tallow"], {}))
        for inflight in rates:
            rates[inflight].append(two_peer_rate(inflight, args.seconds))

    def median_of(samples: list[dict[str, object]], key: str, sub: str | None = None) -> float:
        values = [s[key][sub] if sub else s[key] for s in samples]  # type: ignore[index]
        return statistics.median(values)  # type: ignore[arg-type]

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; medians of {args.runs} alternating runs "
        f"(`.venv/bin/python bench/core.py --runs {args.runs}`); load average at the end "
        f"{load}. The generator is Python (`tallow bench`) on the same two cores, so these are "
        "floors; bench/compare.py drives the server with a Node generator.",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| zipapp size (`dist/tallow.pyz`) | {ZIPAPP.stat().st_size / 2**20:.1f} MiB |",
        f"| cold start to first healthy probe (zipapp, empty `SHIV_ROOT`) "
        f"| {statistics.median(cold):.2f} s |",
        f"| warm start to first healthy probe (zipapp, unpacked) "
        f"| {statistics.median(warm):.2f} s |",
        f"| start to first healthy probe (`python -m tallow`, installed) "
        f"| {statistics.median(module):.2f} s |",
    ]
    for inflight, samples in rates.items():
        lines.append(
            f"| two peers, one process, {inflight} signal(s) in flight, 300 B: relayed "
            f"messages/s | {median_of(samples, 'messages_per_second'):.0f} "
            f"(round trip p50 {median_of(samples, 'rtt_ms', 'p50'):.2f} ms, "
            f"p99 {median_of(samples, 'rtt_ms', 'p99'):.2f} ms) |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if args.output:
        report.write_section(args.output, section)


if __name__ == "__main__":
    main()
