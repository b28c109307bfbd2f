"""Benchmark commands, run from a clone: `python -m benchmarks.NAME`. Each prints a machine-readable line."""
