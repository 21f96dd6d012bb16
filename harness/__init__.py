"""Helpers shared by the tests, the benchmarks (bench/) and the soak (scripts/soak.py): real
processes on free loopback ports and a small signaling client. Not part of the package."""
