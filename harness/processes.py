"""Launch helpers that tests, bench/ and scripts/soak.py share: real Tallow processes on free
loopback ports, and the plain HTTP GET the checks use."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # the tests' drain time (TALLOW_DRAIN_SECONDS=5) and some slack


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (the OS picks it; tests never assume 3000 or 6379)."""
    with socket.socket(family, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one request; HTTP errors are answers, not raises."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, {k.lower(): v for k, v in answer.headers.items()}, answer.read()


@attrs.define
class TallowProcess:
    """One `python -m tallow serve` child process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/signaling"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def metric(self, name: str) -> float:
        """The current value of an unlabelled metric from /api/metrics."""
        body = http_get(self.url + "/api/metrics")[2].decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    async def wait_metric(self, name: str, value: float, timeout: float = 10.0) -> None:
        """Wait until the server reports ``value`` for ``name`` (e.g. after a client left)."""
        with trio.fail_after(timeout):
            while await trio.to_thread.run_sync(self.metric, name) != value:
                await trio.sleep(0.02)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tallow exited with {self.process.returncode}:\n{self.log()}")
            try:
                if http_get(self.url + "/api/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"tallow did not become healthy:\n{self.log()}")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def launch(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    command: list[str] | None = None,
    wait: bool = True,
) -> TallowProcess:
    port = free_port()
    log_path = tmp_path / f"tallow-{port}.log"
    full_env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "TALLOW_NODE_ID": f"test-{port}",
        "TALLOW_DRAIN_SECONDS": "5",
        **(env or {}),
    }
    command = command or [sys.executable, "-m", "tallow"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    server = TallowProcess(process, port, log_path)
    if wait:
        server.wait_healthy()
    return server


def stop_all(servers: list[TallowProcess], timeout: float = STOP_TIMEOUT) -> None:
    """Clean-up: SIGTERM to every server at once (a clean exit, so a measured child writes its
    coverage data), SIGKILL for any still running after ``timeout``."""
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for server in servers:
        try:
            server.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def launcher(folder: Path) -> Iterator[Callable[..., TallowProcess]]:
    """A ``launch`` bound to ``folder`` whose servers are all stopped on exit."""
    started: list[TallowProcess] = []

    def start(**kwargs: Any) -> TallowProcess:
        server = launch(folder, **kwargs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        stop_all(started)
