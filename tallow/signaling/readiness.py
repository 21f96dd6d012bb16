"""When a session's socket has something to read: one edge-triggered epoll set for them all.

Trio's ``wait_readable`` arms a one-shot registration with ``epoll_ctl`` on every wait: one
system call and its bookkeeping per relayed message. Here each session's socket joins one
epoll set of our own, once, edge-triggered; the one task that owns the set (``run``) waits for
the set's own descriptor to turn readable, takes every ready socket in one ``epoll_wait`` and
wakes the sessions waiting on them. An edge that arrives while its session is busy is
remembered, so that session's next wait returns at once.

A socket may come with a ``Reader``: when its edge finds the session's task waiting, the reader
handles what came right there, in the set's task (``Reader.on_readable``), and the session's task
stays parked: no task switch, no rescheduling per message. Only what the reader cannot finish
without waiting (or the session's end) wakes the session's own task.

Edge-triggered means a reader must not wait while bytes it has not read remain: the transport
reads again without waiting after a read that filled its buffer.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Awaitable
from functools import partial
from typing import Protocol

import trio

_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
BATCH = 512  # ready sockets taken per epoll_wait (more stay ready for the next)


class Reader(Protocol):
    def on_readable(self) -> bool:
        """The socket turned readable while its task waits: handle it here, without waiting.
        True: done, the task waits on; False: end the task's wait, it carries on."""
        ...


class ReadReadiness:
    __slots__ = ("_epoll", "_readers", "_ready", "_waiting")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._waiting: dict[int, trio.lowlevel.Task] = {}
        self._readers: dict[int, Reader] = {}
        self._ready: set[int] = set()  # an edge came while nobody waited

    def add(self, fd: int, reader: Reader | None = None) -> None:
        """Watch ``fd``, a socket the caller ``forget``s before closing it. (Bytes that came
        before are reported too: registering a ready descriptor queues its edge.)"""
        if reader is not None:
            self._readers[fd] = reader
        try:
            self._epoll.register(fd, _EVENTS)
        except FileExistsError:  # a socket closed elsewhere left its number registered
            self._epoll.modify(fd, _EVENTS)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (still open) and end a wait on it."""
        task = self._waiting.pop(fd, None)
        if task is not None:
            trio.lowlevel.reschedule(task)
        self._ready.discard(fd)
        self._readers.pop(fd, None)
        if self._epoll.closed:  # shutting down: sessions part after run() ended
            return
        with contextlib.suppress(OSError):  # closed elsewhere: the kernel dropped it already
            self._epoll.unregister(fd)

    def wake(self, fd: int) -> None:
        """End a wait on ``fd`` now (the session is closing), or the next one."""
        task = self._waiting.pop(fd, None)
        if task is None:
            self._ready.add(fd)
        else:
            trio.lowlevel.reschedule(task)

    def wait(self, fd: int) -> Awaitable[None]:
        """The wait, for the calling task to await at once, until ``fd`` may have something to
        read (or ``wake``; at once for -1, a closed socket's number). A checkpoint either way.

        Not a coroutine: the task is registered here and awaits Trio's trap directly, so a
        parked session keeps one frame less (0.3 KiB).
        """
        if fd in self._ready or fd == -1:
            self._ready.discard(fd)
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        self._waiting[fd] = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(partial(self._abort, fd))  # noqa: ASYNC105

    def _abort(self, fd: int, _: object) -> trio.lowlevel.Abort:
        del self._waiting[fd]
        return trio.lowlevel.Abort.SUCCEEDED

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: wake the sessions whose sockets turned readable."""
        task_status.started()
        own = self._epoll.fileno()
        try:
            while True:
                await trio.lowlevel.wait_readable(own)
                for fd, _ in self._epoll.poll(0, BATCH):
                    # A reader handles its bytes inline if its task waits; else the task is
                    # woken (or, if it is not waiting, its next wait returns at once).
                    task = self._waiting.get(fd)
                    if task is None:
                        self._ready.add(fd)
                        continue
                    reader = self._readers.get(fd)
                    if reader is not None and reader.on_readable():
                        continue
                    # The reader may have ended the wait itself (a close, a full read): once.
                    if self._waiting.pop(fd, None) is not None:
                        trio.lowlevel.reschedule(task)
        finally:
            trio.lowlevel.notify_closing(own)
            self._epoll.close()
