"""Experiments on the synthetic world, run from a clone: `python -m experiments.NAME`; they write docs/results/."""

import bigvl  # noqa: F401 (first: picks JAX's platform before a module here imports jax; bigvl/parallel/process.py)
