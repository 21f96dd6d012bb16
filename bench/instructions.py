"""Instructions per relayed message at 1 pair, counted by callgrind: a figure other work on the
machine does not move, for A/B-ing a change to the relay path.

    .venv/bin/python bench/instructions.py                          # this tree and the bare relay
    .venv/bin/python bench/instructions.py --tree ../before --tree .  # two trees, one run
    .venv/bin/python bench/instructions.py --as-is   # and the floor under any Trio relay

Each server runs under `valgrind --tool=callgrind` with counting off while it starts; the Node
generator (bench/loadgen.mjs) keeps one 300-byte signal in flight between one pair, and counting
is on only from its `start` event to its `stop` event (`callgrind_control`). The count is the
server's own user-space instructions, interpreter and libraries included, divided by the
messages relayed while it counted: from a mark the generator answers once counting is on (the
switch takes up to seconds on a busy machine) to the end of its window. Repeated runs of one
tree agree within about 0.5%, busy machine or not. It leaves out the kernel (the system calls'
own work) and how fast each instruction runs:
messages per CPU-second in bench/compare.py remain the figure that compares with PeerJS server.
Needs valgrind (a Debian package) besides what bench/compare.py needs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

import report
from servers import ROOT, Server, bare_relay, ensure_node_packages, run_generator, tallow

SLOWDOWN_SECONDS = 3.0  # warm-up: the first messages under valgrind are translated, not run


def under_callgrind(workdir: Path) -> list[str]:
    """The prefix that runs a server under callgrind, counting nothing until told to."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir}/callgrind.%p.out",
    ]


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def dumped_instructions(workdir: Path, pid: int) -> int:
    """Instructions in the dump `callgrind_control --dump` wrote for `pid`."""
    (dump,) = workdir.glob(f"callgrind.{pid}.out.*")
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals line in {dump}")


def measure(server: AbstractContextManager[Server], workdir: Path, seconds: float) -> float:
    """Instructions per relayed message of `server`, started with `under_callgrind(workdir)`."""
    with server as running:
        pid = running.pid  # valgrind runs the server in its own process: the one to count

        marks: list[int] = []  # signals relayed so far, as the generator counts them

        def on_event(event: dict[str, object]) -> str | None:
            # Switching counting on takes a while (longer on a busy machine) while signals flow:
            # the messages are counted from a mark taken once it is on, not from the window's
            # start. At "stop" the generator stops sending: the dump has only idle time after it.
            if event["event"] == "start":
                callgrind_control("--instr=on", str(pid))
                return "mark"
            if event["event"] in ("mark", "stop"):
                marks.append(int(str(event["relayed"])))
            if event["event"] == "stop":
                callgrind_control("--dump", str(pid))
            return None

        result = run_generator(
            [
                *("rate", "--protocol", "tallow", "--url", running.ws_url, "--pairs", "1"),
                *("--seconds", str(seconds), "--warmup", str(SLOWDOWN_SECONDS)),
                *("--connect-timeout", "120"),
            ],
            on_event,
            timeout=seconds + 300,
        )
        if result["errors"]:
            raise RuntimeError(f"the generator saw errors: {result['errors']}")
        first, last = marks
        return dumped_instructions(workdir, pid) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        help="a checkout whose tallow/ to measure (repeat for an A/B; default: this one)",
    )
    parser.add_argument("--no-bare-relay", action="store_true", help="skip the bare relay")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="also the bare relay forwarding signals unread (the floor under any Trio relay)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="counted window per server")
    parser.add_argument("--runs", type=int, default=1, help="runs per server, alternated")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [ROOT]]
    ensure_node_packages()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tallow-instructions-") as folder:
        for run in range(args.runs):
            for index, tree in enumerate(trees):
                workdir = Path(folder) / f"run{run}-tree{index}"
                workdir.mkdir()
                env = {"PYTHONPATH": str(tree)}
                server = tallow(workdir, env, prefix=under_callgrind(workdir))
                count = measure(server, workdir, args.seconds)
                rows.setdefault(f"Tallow ({tree})", []).append(count)
                print(f"run {run + 1}: Tallow ({tree}): {count:,.0f}", file=sys.stderr)
            relays = [(report.BARE, False)] * (not args.no_bare_relay)
            relays += [(f"{report.BARE}, signals forwarded unread", True)] * args.as_is
            for name, as_is in relays:
                workdir = Path(folder) / f"run{run}-bare{int(as_is)}"
                workdir.mkdir()
                server = bare_relay(workdir, under_callgrind(workdir), as_is)
                count = measure(server, workdir, args.seconds)
                rows.setdefault(name, []).append(count)
                print(f"run {run + 1}: {name}: {count:,.0f}", file=sys.stderr)
    print("| server | instructions per relayed message (each run) |")
    print("|---|---|")
    for name, counts in rows.items():
        print(f"| {name} | {' / '.join(f'{count:,.0f}' for count in counts)} |")


if __name__ == "__main__":
    main()
