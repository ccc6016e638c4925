"""Load benchmarks on loopback (scripts/bench-load)."""
