"""Hostile tests: one long-lived server per module, bystanders that must notice nothing, a tally
of the bad inputs tried (printed at the end of the run), and the server's memory as the OS sees it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import launcher
from harness.procfs import rss_kib
from tests.hostile.wire import RawClient

TALLY: Counter[str] = Counter()  # bad inputs sent to a live server, by kind


def tried(kind: str, count: int = 1) -> None:
    TALLY[kind] += count


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY:
        terminalreporter.section("hostile inputs tried")
        for kind, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{kind:<36} {count:>7}")
        terminalreporter.write_line(f"{'total':<36} {sum(TALLY.values()):>7}")


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory, request: Any) -> Iterator[Any]:
    """Factory for servers that live as long as the test module (hypothesis runs many examples
    against one server; a fresh process per example would test start-up, not abuse)."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with launcher(folder) as start:
        yield start


class Bystanders:
    """Two well-behaved clients in their own room, from their own address, exchanging a ping and
    a signal each way every ``period`` seconds in a thread while a test abuses the same server.
    Every failure or slow round trip is recorded; ``stop()`` returns the round-trip times."""

    def __init__(
        self, port: int, source: str = "127.0.0.250", period: float = 0.05, budget: float = 5.0
    ) -> None:
        self.alice = RawClient.connect(port, source, timeout=budget)
        self.bob = RawClient.connect(port, source, timeout=budget)
        room = "bystanders-" + self.alice.peer[:8]
        assert self.alice.request({"type": "join", "room": room})["type"] == "joined"
        assert self.bob.request({"type": "join", "room": room})["type"] == "joined"
        assert self.alice.recv_json()["type"] == "peer-joined"
        self.period = period
        self.failures: list[str] = []
        self.rounds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystanders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _round(self, number: int) -> None:
        alice, bob = self.alice, self.bob
        assert alice.request({"type": "ping", "id": number}) == {"type": "pong", "re": number}
        alice.send_json({"type": "signal", "to": bob.peer, "data": {"n": number}})
        got = bob.recv_json()
        assert got == {"type": "signal", "from": alice.peer, "data": {"n": number}}, got
        bob.send_json({"type": "signal", "to": alice.peer, "data": {"n": -number}})
        got = alice.recv_json()
        assert got == {"type": "signal", "from": bob.peer, "data": {"n": -number}}, got

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            started = time.monotonic()
            try:
                self._round(number)
            except Exception as error:  # recorded, and the test fails on it
                self.failures.append(f"round {number}: {error!r}")
                return
            self.rounds.append(time.monotonic() - started)
            self._stop.wait(self.period)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(30)
        self.alice.shut()
        self.bob.shut()
        return self.rounds

    def check(self, min_rounds: int = 1) -> None:
        """The bystanders noticed nothing: no failure, and they kept talking throughout."""
        assert not self.failures, self.failures
        assert len(self.rounds) >= min_rounds, self.rounds


class RssPeak:
    """Samples a process's RSS every ``period`` seconds in a thread; ``peak`` in KiB."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.pid, self.period = pid, period
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
