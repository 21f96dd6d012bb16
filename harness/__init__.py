"""Helpers shared by the tests, the benchmarks (bench/) and the soak (scripts/soak.py): real
processes on free loopback ports (processes), what /proc says about them (procfs), Redis servers
(redis) and a small signaling client (client). Not part of the package."""
