"""`tallow bench`: the load generator operators point at their own deployment."""

from __future__ import annotations

import json
import subprocess
import sys


def bench(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tallow", "bench", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_reports_throughput_latency_and_connections(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_RATE_LIMIT": "0"})
    result = bench(server.ws_url, "--pairs", "3", "--seconds", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["pairs"] == 3 and summary["errors"] == {}
    assert summary["relayed_messages"] > 0 and summary["messages_per_second"] > 0
    assert 0 < summary["rtt_ms"]["p50"] <= summary["rtt_ms"]["p99"] <= summary["rtt_ms"]["max"]
    assert summary["connections_per_second"] > 0
    relayed = server.metric('tallow_messages_handled_total{type="signal"}')
    assert relayed >= summary["relayed_messages"]


def test_bench_shows_the_servers_rate_limit(start_tallow) -> None:
    server = start_tallow(
        env={"TALLOW_RATE_LIMIT": "5", "TALLOW_RATE_BURST": "5", "TALLOW_ABUSE_STRIKES": "100000"}
    )
    result = bench(server.ws_url, "--pairs", "1", "--seconds", "1", "--inflight", "4")
    assert result.returncode == 0, result.stderr
    assert "rate-limited" in result.stdout


def test_bench_explains_a_refused_connection(start_tallow) -> None:
    server = start_tallow(env={"TALLOW_MAX_CONNECTIONS_PER_IP": "1"})
    result = bench(server.ws_url, "--pairs", "1", "--seconds", "1")
    assert result.returncode == 1
    assert "too many connections from your address" in result.stderr
