"""Evaluators: each runs standalone on a checkpoint (`python -m bigvl.evaluate`) and in training.

Every evaluator is `evaluate(encoder, ...) -> dict[str, float]` over an `bigvl.inference.encoder.Encoder`,
plus a pure metric function on embeddings that tests check against naive references.
"""
from bigvl.evaluators.common import chance_levels, run_evals

__all__ = ["run_evals", "chance_levels"]
