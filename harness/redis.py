"""Real redis-server and redis-sentinel processes on free loopback ports, and polling helpers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from harness.processes import free_port

START_TIMEOUT = 10.0


@attrs.define
class RedisServer:
    """One redis-server; ``restart()`` brings it back on the same port (empty: no persistence)."""

    workdir: Path
    extra: list[str] = attrs.Factory(list)
    port: int = attrs.Factory(free_port)
    process: subprocess.Popen[bytes] | None = None
    cli_args: list[str] = attrs.Factory(list)  # how redis-cli reaches it (auth, TLS)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "redis.log").read_text())
            if self.cli("PING", check=False) == "PONG":
                return self
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()

    def cli(self, *command: str, check: bool = True) -> str:
        """One command through redis-cli; its output, stripped."""
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *self.cli_args, *command],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and (done.returncode or done.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS"))):
            raise RuntimeError(f"redis-cli {command}: {done.stdout}{done.stderr}")
        return done.stdout.strip()

    def scan_keys(self, pattern: str = "*") -> list[str]:
        return sorted(line for line in self.cli("--scan", "--pattern", pattern).splitlines())


@attrs.define
class Sentinel:
    """One redis-sentinel watching ``service`` on a primary."""

    workdir: Path
    primary_port: int
    service: str = "tallow"
    port: int = attrs.Factory(free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.process = subprocess.Popen(
            ["redis-sentinel", str(config)],
            stdout=(self.workdir / "sentinel.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def primary_port_now(self) -> int | None:
        done = subprocess.run(
            [
                "redis-cli",
                "-p",
                str(self.port),
                "SENTINEL",
                "get-master-addr-by-name",
                self.service,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        lines = done.stdout.split()
        return int(lines[1]) if len(lines) == 2 else None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def eventually(check: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Poll ``check`` until it holds; the seconds that took. Fails after ``timeout``."""
    started = trio.current_time()
    while not check():
        if trio.current_time() - started > timeout:
            raise AssertionError(f"still not so after {timeout} s")
        await trio.sleep(step)
    return trio.current_time() - started


async def signal_until_through(sender: Any, receiver: Any, timeout: float) -> float:
    """Signal every 0.2 s until one gets through; seconds it took. Errors are fine meanwhile."""
    started = trio.current_time()
    with trio.fail_after(timeout):
        while True:
            await sender.send({"type": "signal", "to": receiver.peer, "data": "probe"})
            with trio.move_on_after(0.2):
                while True:
                    reply = await receiver.recv(timeout)
                    if reply.get("data") == "probe":
                        return trio.current_time() - started
            while not await sender.nothing_pending(0.01):
                pass  # errors from the outage: drop them
