"""A real coturn (Debian's `turnserver`) on free loopback ports, with TURN REST authentication."""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from harness.processes import free_port

START_TIMEOUT = 15.0


@attrs.frozen
class Coturn:
    port: int
    secret: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def stun_answers(port: int) -> bool:
    """True once a STUN Binding request to 127.0.0.1:port gets a Binding success response."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.sendto(request, ("127.0.0.1", port))
        try:
            answer = probe.recv(2048)
        except OSError:
            return False
    return answer[:2] == b"\x01\x01" and answer[8:20] == request[8:20]


@contextmanager
def run_coturn(directory: Path) -> Iterator[Coturn]:
    port = free_port(kind=socket.SOCK_DGRAM)
    relay_min = random.randrange(40000, 60000, 200)
    server = Coturn(port, secrets.token_hex(16), directory / f"turnserver-{port}.log")
    command = [
        "turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
        "--relay-ip=127.0.0.1", f"--min-port={relay_min}", f"--max-port={relay_min + 199}",
        "--use-auth-secret", f"--static-auth-secret={server.secret}", "--realm=tallow.test",
        # UDP only: the port was picked free for UDP, and a busy TCP twin would stall start-up.
        "--no-tcp", "--no-tcp-relay", "--no-tls", "--no-dtls", "--no-cli",
        "--allow-loopback-peers", "--simple-log",
        f"--log-file={server.log_path}", f"--pidfile={directory / 'turnserver.pid'}",
        f"--userdb={directory / 'turndb'}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not stun_answers(port):
            assert process.poll() is None, f"turnserver exited:\n{server.log()}"
            assert time.monotonic() < deadline, f"turnserver did not answer:\n{server.log()}"
        yield server
    finally:
        process.terminate()
        process.wait(10)
