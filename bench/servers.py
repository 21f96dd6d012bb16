"""The processes a side-by-side run needs: Tallow, PeerJS server, the bare relay, Redis and the
Node generator.

Every process is started on a free loopback port and stopped by whoever started it; the figures
read from /proc (resident memory, CPU time) cover a process and all its descendants, so a server
that forks workers is measured whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import attrs

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from harness.processes import free_port, launch  # noqa: E402  (the launch helpers the tests use)
from harness.procfs import cpu_times as process_cpu_times  # noqa: E402
from harness.procfs import rss_kib, tree  # noqa: E402
from harness.redis import RedisServer  # noqa: E402

PEERJS_BIN = BENCH / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
LOADGEN = BENCH / "loadgen.mjs"
START_TIMEOUT = 60.0
# Tallow with its per-connection and per-address limits off: one generator on one address
# drives every connection, and the limits would measure themselves instead of the relay.
TALLOW_ENV = {
    "TALLOW_RATE_LIMIT": "0",
    "TALLOW_MAX_CONNECTIONS_PER_IP": "0",
    "LOG_LEVEL": "warning",
}
# PeerJS server refuses clients past `concurrent_limit` (5000 by default): lift it above the
# 10,000 idle connections, as an operator would. Its other defaults stay: alive_timeout only
# drops peers that send no HEARTBEAT, and the generator sends one every 5 s like its client.
PEERJS_ARGS = ["--concurrent_limit", "100000"]


def ensure_node_packages() -> None:
    """`npm ci` in bench/ unless node_modules already matches package-lock.json."""
    installed = BENCH / "node_modules" / ".package-lock.json"
    lock = BENCH / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process tree."""
    return sum(rss_kib(member) for member in tree(pid)) * 1024


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process tree."""
    times = [process_cpu_times(member) for member in tree(pid)]
    return sum(user for user, _ in times), sum(system for _, system in times)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process tree."""
    return sum(cpu_times(pid))


@attrs.define
class Server:
    name: str
    process: subprocess.Popen[bytes]
    ws_url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer {url} within {START_TIMEOUT:.0f} s")


@contextmanager
def tallow(
    workdir: Path, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> Iterator[Server]:
    """`python -m tallow serve` on a free port (its log in `workdir`), run by `prefix` if given
    (e.g. valgrind)."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [*prefix, sys.executable, "-m", "tallow"]
    running = launch(workdir, env={**TALLOW_ENV, **(env or {})}, command=command, wait=False)
    try:
        running.wait_healthy(START_TIMEOUT)
        yield Server("Tallow", running.process, running.ws_url)
    finally:
        running.kill()


def peerjs(workdir: Path) -> AbstractContextManager[Server]:
    """PeerJS server's own CLI (the `peerjs` bin of npm `peer`) on a free loopback port."""
    port = free_port()
    command = ["node", str(PEERJS_BIN), "--host", "127.0.0.1", "--port", str(port), *PEERJS_ARGS]
    return _listening(workdir, "PeerJS", command, port, "/peerjs")


def bare_relay(
    workdir: Path, prefix: Sequence[str] = (), as_is: bool = False
) -> AbstractContextManager[Server]:
    """bench/bare_relay.py, the least a Trio relay does per signal, on a free loopback port
    (``as_is``: not even reading the JSON; one pair only)."""
    port = free_port()
    command = [*prefix, sys.executable, str(BENCH / "bare_relay.py"), "--port", str(port)]
    return _listening(workdir, "Bare relay", command + ["--as-is"] * as_is, port, "/signaling")


@contextmanager
def _listening(
    workdir: Path, name: str, command: list[str], port: int, ws_path: str
) -> Iterator[Server]:
    """``command``: a server on loopback ``port`` that answers HTTP at /; its log in workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / f"{name.lower().replace(' ', '-')}-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", process, name)
        yield Server(name, process, f"ws://127.0.0.1:{port}{ws_path}")
    finally:
        process.kill()
        process.wait()


@contextmanager
def redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.kill()


def run_generator(
    args: list[str],
    on_event: Callable[[dict[str, Any]], str | None] | None = None,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Run bench/loadgen.mjs; hand each event line to `on_event`; return its result line.

    A line `on_event` returns goes to the generator's stdin ("mark": rate mode answers with a
    "mark" event). After an "open" event (idle mode) the generator's stdin is closed, which
    tells it to close its connections and finish.
    """
    process = subprocess.Popen(
        ["node", str(LOADGEN), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(timeout, process.kill)  # a hung run must not hang the harness
    watchdog.start()
    result: dict[str, Any] | None = None
    try:
        assert process.stdout is not None and process.stdin is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "result":
                result = event
            elif on_event is not None and (reply := on_event(event)) is not None:
                process.stdin.write(reply + "\n")
                process.stdin.flush()
            if event["event"] == "open":
                process.stdin.close()
        stderr = process.stderr.read() if process.stderr else ""
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0 or result is None:
        reason = next((line for line in stderr.splitlines() if line.startswith("loadgen:")), stderr)
        raise RuntimeError(f"loadgen {' '.join(args)} failed ({process.returncode}): {reason}")
    return result
