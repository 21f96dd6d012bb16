"""Read readiness from one edge-triggered epoll set, in-process on real socket pairs: waits end
when bytes arrive, an edge that comes while nobody waits is kept, wake/forget/cancel end a wait,
and a transport reads a full buffer again instead of waiting for an edge that will not come."""

from __future__ import annotations

import trio
import trio.testing

from tallow.signaling.outbox import Outbox
from tallow.signaling.readiness import ReadReadiness
from tallow.signaling.transport import RECEIVE_BYTES, Need, SocketTransport
from tests.unit.test_codec import masked


async def wait(readiness: ReadReadiness, fd: int) -> None:
    await readiness.wait(fd)  # in the waiting task: wait() registers the task that calls it


async def waits_until_woken(readiness: ReadReadiness, fd: int) -> bool:
    """Whether a wait on ``fd`` is still waiting once everything else has settled."""
    done = False

    async def wait() -> None:
        nonlocal done
        await readiness.wait(fd)
        done = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        waiting = not done
        nursery.cancel_scope.cancel()
    return waiting


async def test_a_wait_ends_when_bytes_arrive(readiness, pair) -> None:
    ours, theirs = pair
    readiness.add(ours.fileno())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, readiness, ours.fileno())
            await trio.testing.wait_all_tasks_blocked()
            theirs.send(b"x")
    assert ours.recv(10) == b"x"
    assert await waits_until_woken(readiness, ours.fileno())  # drained: no edge left


async def test_an_edge_while_nobody_waits_is_kept_for_the_next_wait(readiness, pair) -> None:
    ours, theirs = pair
    readiness.add(ours.fileno())
    theirs.send(b"x")
    await trio.testing.wait_all_tasks_blocked()
    assert not await waits_until_woken(readiness, ours.fileno())
    assert await waits_until_woken(readiness, ours.fileno())  # taken once


async def test_bytes_that_came_before_the_socket_was_added_are_reported(readiness, pair) -> None:
    ours, theirs = pair
    theirs.send(b"early")
    readiness.add(ours.fileno())
    await trio.testing.wait_all_tasks_blocked()
    assert not await waits_until_woken(readiness, ours.fileno())


async def test_wake_and_forget_end_a_wait_and_cancel_leaves_nothing_behind(readiness, pair) -> None:
    ours, _ = pair
    fd = ours.fileno()
    readiness.add(fd)
    for end in (readiness.wake, readiness.forget):
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait, readiness, fd)
                await trio.testing.wait_all_tasks_blocked()
                end(fd)
        readiness.add(fd)
    assert await waits_until_woken(readiness, fd)  # the cancelled wait is gone: wait again
    assert await waits_until_woken(readiness, -1) is False  # a closed socket's number


async def test_a_full_read_is_read_again_after_a_checkpoint_not_an_edge(readiness, pair) -> None:
    """Three messages filling more than one read arrive in one write: one edge for all."""
    ours, theirs = pair
    transport = SocketTransport(ours, readiness, 1 << 20)
    payload = "y" * (RECEIVE_BYTES // 2)
    theirs.sendall(b"".join(masked(0x81, payload.encode()) for _ in range(3)))
    outbox = Outbox(transport, 16, lambda writer: None)
    received, waits = [], 0
    with trio.fail_after(5):
        while len(received) < 3:
            message = transport.receive_nowait(outbox)
            if message is Need.READ:
                waits += 1
                await transport.readable(lambda: False)  # nothing taken inline
            else:
                received.append(message)
    assert received == [payload] * 3
    # Before each read a wait (a checkpoint): the one for the edge, then one that returns at
    # once for the bytes the full read left behind. A flood cannot read without yielding.
    assert waits == 2


async def test_a_waiting_transport_takes_bytes_inline_and_its_task_stays_parked(
    readiness, pair
) -> None:
    """The reader runs in the readiness task; the waiting task wakes only when it says so."""
    ours, theirs = pair
    transport = SocketTransport(ours, readiness, 1 << 20)
    outbox = Outbox(transport, 16, lambda writer: None)
    taken: list[object] = []
    woken = trio.Event()

    def inline() -> bool:
        while (message := transport.receive_nowait(outbox)) is not Need.READ:
            if message == "stop":
                return False
            taken.append(message)
        return True

    async def session() -> None:
        assert transport.receive_nowait(outbox) is Need.READ
        await transport.readable(inline)
        woken.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session)
            await trio.testing.wait_all_tasks_blocked()
            for text in ("a", "b"):  # one edge each, both taken inline
                theirs.sendall(masked(0x81, text.encode()))
                await trio.testing.wait_all_tasks_blocked()
            assert taken == ["a", "b"] and not woken.is_set()
            theirs.sendall(masked(0x81, b"stop"))
            await woken.wait()
