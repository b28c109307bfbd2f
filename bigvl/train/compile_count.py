"""Counting the train step's compilations: one per batch shape (one per NaFlex length), never one per batch.

`jax.jit` traces and compiles its function once per new input signature (shapes, dtypes,
shardings) and reuses the program after; with NaFlex buckets each length is one signature.
`CountedTraces` wraps the unjitted step so each trace records the batch shapes it was traced
for; the trainer logs the count as the `step_compiles` metric.
"""
from __future__ import annotations

from typing import Callable


class CountedTraces:
    """fn(state, batch) → the same, recording `{key: shape}` of the batch each time JAX traces it."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.shapes: list[dict[str, tuple[int, ...]]] = []

    def __call__(self, state, batch):
        self.shapes.append({key: tuple(x.shape) for key, x in batch.items()})  # runs at trace time only
        return self.fn(state, batch)

    @property
    def count(self) -> int:
        return len(self.shapes)
