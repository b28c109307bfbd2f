"""Experiments on the synthetic world, run from a clone: `python -m experiments.NAME`; they write docs/results/."""
