"""Real redis-server, redis-sentinel and Redis Cluster processes on free loopback ports, and
polling helpers."""

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
CLUSTER_CREATE_OPTIONS = ("--cluster-replicas", "1", "--cluster-yes")


@attrs.define
class RedisServer:
    """One redis-server; ``restart()`` brings it back on the same port (empty: no persistence)."""

    workdir: Path
    extra: list[str] = attrs.Factory(list)
    port: int = attrs.Factory(free_port)
    process: subprocess.Popen[bytes] | None = None
    cli_args: list[str] = attrs.Factory(list)  # how redis-cli reaches it (auth, TLS)
    prefix: str = "tallow"  # REDIS_PREFIX of the replicas a test starts on it

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def key_prefix(self) -> str:
        """How Tallow's key names start on this Redis."""
        return self.prefix

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

    def calls(self, command: str) -> int:
        """How many times this server has run ``command`` (INFO commandstats), e.g. evalsha."""
        prefix = f"cmdstat_{command.lower()}:"
        stats = self.cli("INFO", "commandstats").splitlines()
        line = next((line for line in stats if line.startswith(prefix)), "calls=0,")
        return int(line.split("calls=")[1].split(",")[0])

    def channels(self, pattern: str = "*") -> list[str]:
        """Pub/sub channels matching ``pattern`` that have a subscriber right now."""
        return sorted(self.cli("PUBSUB", "CHANNELS", pattern).splitlines())


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


@attrs.define
class RedisCluster:
    """A Redis Cluster of ``primaries`` primaries with one replica each; fails over in ~1 s."""

    workdir: Path
    primaries: int = 3
    prefix: str = "tallow"
    nodes: list[RedisServer] = attrs.Factory(list)

    def start(self) -> RedisCluster:
        for index in range(2 * self.primaries):
            options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            options += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "1000"]
            # A replica may always take over, however long it was cut off from its primary.
            options += ["--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0"]
            self.nodes.append(RedisServer(self.workdir / f"node-{index}", options).start())
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, *CLUSTER_CREATE_OPTIONS],
            capture_output=True,
            timeout=60,
            check=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 2 * START_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster is not whole")
            time.sleep(0.1)

    def heal(self) -> None:
        """Start killed nodes again: each rejoins as a replica of its shard's primary now."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                node.start()
        self._wait_ready()

    def _ready(self) -> bool:
        if any("cluster_state:ok" not in node.cli("CLUSTER", "INFO") for node in self.nodes):
            return False
        if any(len(self._replicas_seen(node)) != self.primaries for node in self.nodes):
            return False
        # Every replica has its primary's data (else a failover would promote an empty one).
        synced = sum(n.cli("INFO", "replication").count("state=online") for n in self.nodes)
        return synced == self.primaries

    @staticmethod
    def _replicas_seen(node: RedisServer) -> list[str]:
        """The replica lines ``node`` has in its view of the cluster, each with its primary."""
        lines = node.cli("CLUSTER", "NODES").splitlines()
        return [line for line in lines if "slave" in line.split()[2].split(",")]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.live_nodes())
        return f"redis+cluster://{hosts}"

    @property
    def key_prefix(self) -> str:
        return "{" + self.prefix + "}"

    def live_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process and node.process.poll() is None]

    def primary_for(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot right now."""
        node = self.live_nodes()[0]
        slot = int(node.cli("CLUSTER", "KEYSLOT", key))
        for line in node.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for ranges in fields[8:]:
                low, _, high = ranges.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no primary serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """The node that replicates ``primary``."""
        lines = primary.cli("CLUSTER", "NODES").splitlines()
        primary_id = next(line.split()[0] for line in lines if "myself" in line)
        port = next(
            int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for fields in (line.split() for line in lines)
            if fields[3] == primary_id
        )
        return next(node for node in self.nodes if node.port == port)

    def cli(self, *command: str) -> str:
        """A keyed command, sent to the primary of its key's slot (the key comes second)."""
        return self.primary_for(command[1]).cli(*command)

    def primary_nodes(self) -> list[RedisServer]:
        return [n for n in self.live_nodes() if "role:master" in n.cli("INFO", "replication")]

    def scan_keys(self, pattern: str = "*") -> list[str]:
        return sorted(key for node in self.primary_nodes() for key in node.scan_keys(pattern))

    def channels(self, pattern: str = "*") -> list[str]:
        """Sharded channels matching ``pattern`` that have a subscriber right now."""
        found = (node.cli("PUBSUB", "SHARDCHANNELS", pattern) for node in self.primary_nodes())
        return sorted(channel for lines in found for channel in lines.splitlines())

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


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
