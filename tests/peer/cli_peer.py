"""`tallow send` / `tallow receive` as child processes, read through their stdout lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PEER_TIMEOUT = 90.0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class PeerProcess:
    """A running `python -m tallow send|receive ...`; its stdout `key: value` lines as they come."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tallow", *args],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as a terminal delivers it: a test suite started in the background (a shell
            # without job control) would otherwise hand the peer SIGINT ignored, and interrupt()
            # would do nothing.
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.stamps: list[tuple[float, str]] = []  # (time.monotonic(), line) of both streams
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors)),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.stamps.append((time.monotonic(), line))
            into.append(line.rstrip("\n"))

    def when(self, text: str) -> float:
        """When the first line containing `text` came (either stream); it must have come."""
        return next(at for at, line in self.stamps if text in line)

    def values(self, key: str) -> list[str]:
        return [line.split(": ", 1)[1] for line in self.lines if line.startswith(f"{key}: ")]

    def value(self, key: str, timeout: float = PEER_TIMEOUT) -> str:
        """The first `key: value` line, waiting for it."""
        deadline = time.monotonic() + timeout
        while not (found := self.values(key)):
            assert self.process.poll() is None or not self._alive_readers(), self.describe()
            assert time.monotonic() < deadline, f"no {key!r} line in {timeout} s\n{self.describe()}"
            time.sleep(0.05)
        return found[0]

    def said(self, text: str, timeout: float = PEER_TIMEOUT) -> None:
        """Wait until a stderr line (meant for the person) contains `text`."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.errors):
            assert time.monotonic() < deadline, f"never said {text!r}\n{self.describe()}"
            time.sleep(0.05)

    def _alive_readers(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def wait(self, timeout: float = PEER_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"still running after {timeout} s\n{self.describe()}") from None
        for reader in self._readers:
            reader.join(5)
        return code

    def answer(self, line: str) -> None:
        """Type `line` at the peer's question (and close its input)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n")
        self.process.stdin.close()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def describe(self) -> str:
        return f"tallow {' '.join(self.args)}\nstdout:\n" + "\n".join(
            [*self.lines, "stderr:", *self.errors]
        )
