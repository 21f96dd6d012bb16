"""bench/compare.py end to end in a tiny configuration: it proves the harness works, not speeds.

Real servers (Tallow, PeerJS server from bench/'s lockfile, the bare relay, redis-server with
two Tallow replicas), the real Node generator, the real report and plot; a few seconds per
figure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_SECTION = "## Core server (bench/core.py)\n\nkept as it was\n"


def test_harness_measures_both_servers_and_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "performance.md"
    output.write_text("# Performance\n\n" + CORE_SECTION)
    raw = tmp_path / "raw.json"
    subprocess.run(
        [
            sys.executable,
            "bench/compare.py",
            "--pairs=1,3",
            "--runs=1",
            "--seconds=1",
            "--warmup=0.3",
            "--idle-connections=50",
            "--startup-runs=0",
            "--redis-pairs=2",
            "--bare-relay",
            f"--output={output}",
            f"--raw={raw}",
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    data = json.loads(raw.read_text())

    # Alternating: Tallow, PeerJS, the bare relay, and again; every run relayed signals
    # without an error.
    assert [(s["server"], s["pairs"]) for s in data["rates"]] == [
        ("Tallow", 1),
        ("PeerJS", 1),
        ("Bare relay", 1),
        ("Tallow", 3),
        ("PeerJS", 3),
        ("Bare relay", 3),
    ]
    for sample in data["rates"] + data["redis"]:
        assert sample["relayed_messages"] > 0, sample
        assert sample["errors"] == {}, sample
        rtt = sample["rtt_ms"]
        assert 0 < rtt["p50"] <= rtt["p99"] <= rtt["max"], sample
        assert sample["server_cpu"] > 0, sample
    for sample in data["rates"]:  # and where that CPU went, per relayed message
        assert sample["server_user_us"] > 0 and sample["server_system_us"] >= 0, sample
    assert [s["layout"] for s in data["redis"]] == ["same replica", "across"]

    assert [(s["server"], s["connections"], s["dropped"]) for s in data["memory"]] == [
        ("Tallow", 50, 0),
        ("PeerJS", 50, 0),
    ]
    assert all(s["rss_open"] > 0 for s in data["memory"])

    text = output.read_text()
    assert CORE_SECTION in text  # another script's section survives
    assert "## Side by side with PeerJS server (bench/compare.py)" in text
    assert "| 1 (2) |" in text and "| 3 (6) |" in text
    bare = text.split("### The bare relay", 1)[1].split("###", 1)[0]
    assert "\n| 1 | " in bare and "\n| 3 | " in bare
    # Every relay target with the range its single runs gave beside the median ratio.
    assert len(re.findall(r"msg/s x[\d.]+, runs x[\d.]+-[\d.]+; p99 x[\d.]+, runs x", text)) == 2
    assert "](performance.png)" in text
    assert (tmp_path / "performance.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
