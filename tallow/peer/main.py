"""tallow.cli's `send` and `receive`: run the work, map the outcome to an exit code."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from tallow.peer.errors import EXIT_INTERRUPTED, EXIT_OK, PeerError
from tallow.peer.session import run_receive, run_send
from tallow.peer.terminal import Terminal


def _run(work: Callable[[Terminal], Awaitable[None]]) -> int:
    ui = Terminal()

    async def main() -> None:
        # SIGTERM cancels like Ctrl-C does: the other side is told, the room is left.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await work(ui)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        ui.say("tallow: cancelled; the other side was told.")
        return EXIT_INTERRUPTED
    except PeerError as error:
        ui.say(f"tallow: {error}")
        return error.exit_code
    return EXIT_OK


def send(
    paths: list[Path], text: str | None, server: str, *, relay: bool, yes: bool, name: str,
    timeout: float,
) -> int:  # fmt: skip
    return _run(lambda ui: run_send(ui, paths, text, server, relay=relay, assume_yes=yes,
                                    name=name, connect_timeout=timeout))  # fmt: skip


def receive(
    target: str, server: str | None, out: Path, *, relay: bool, accept: bool, name: str,
    timeout: float,
) -> int:  # fmt: skip
    return _run(lambda ui: run_receive(ui, target, server, out, relay=relay, accept=accept,
                                       name=name, connect_timeout=timeout))  # fmt: skip
