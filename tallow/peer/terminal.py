"""What a person sees and answers in the terminal.

Results a script reads go to stdout as `key: value` lines (docs/cli.md); everything meant for a
person (explanations, the QR code, questions, progress) goes to stderr. Progress is a tqdm bar on a
terminal and a plain line every few seconds otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Protocol, TextIO

import segno
from tqdm import tqdm

PLAIN_PROGRESS_SECONDS = 5.0
MIB = 1024 * 1024


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


class Progress(Protocol):
    def update(self, count: int, /) -> object: ...
    def close(self) -> None: ...


class PlainProgress:
    """For logs and pipes: a line at most every few seconds, and one at the end."""

    def __init__(self, out: TextIO, label: str, total: int) -> None:
        self.out, self.label, self.total = out, label, total
        self.done = 0
        self.started = self.shown = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.shown >= PLAIN_PROGRESS_SECONDS:
            self.shown = time.monotonic()
            self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = 100 * self.done // self.total if self.total else 100
        print(
            f"{self.label}: {share}% of {human_size(self.total)}, "
            f"{self.done / elapsed / MIB:.1f} MiB/s",
            file=self.out,
            flush=True,
        )

    def close(self) -> None:
        self._line()


class Terminal:
    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err
        self.tty = err.isatty()

    def result(self, key: str, value: str) -> None:
        print(f"{key}: {value}", file=self.out, flush=True)

    def text(self, text: str) -> None:
        """A received text, as it is, after its `text:` line."""
        print(text, file=self.out, flush=True)

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def qr(self, link: str) -> None:
        if self.tty:  # a QR code in a log file helps nobody
            segno.make(link, error="m").terminal(out=self.err, compact=True)

    def progress(self, label: str, total: int) -> Progress:
        if self.tty:
            return tqdm(
                total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                file=self.err, dynamic_ncols=True,
            )  # fmt: skip
        return PlainProgress(self.err, label, total)

    async def ask(self, question: str) -> bool:
        """A yes/no question; only "y" or "yes" (any case) is yes, end of input is no."""
        print(question, file=self.err)
        print("[y/N] ", end="", file=self.err, flush=True)
        line = await read_line(sys.stdin)
        if not line:
            self.say("")
        return line.strip().lower() in ("y", "yes")


async def read_line(stream: TextIO) -> str:
    """One line of `stream` without blocking the event loop ('' at end of input).

    A reader callback, not a thread: a thread blocked in input() would keep the process alive
    after Ctrl-C.
    """
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()
    fd = stream.fileno()

    def readable() -> None:
        if not line.done():
            line.set_result(stream.readline())

    loop.add_reader(fd, readable)
    try:
        return await line
    finally:
        loop.remove_reader(fd)
