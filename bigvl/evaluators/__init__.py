"""Evaluators: each runs standalone on a checkpoint (`python -m bigvl.evaluate`) and in training.

Every evaluator is `evaluate(encoder, ...) -> dict[str, float]` over an `bigvl.inference.encoder.Encoder`,
plus a pure metric function on embeddings that tests check against naive references. A config
runs them through `evals.NAME = dict(type=TYPE, ...)` entries; the types are the table
`EVALUATORS` (common.py).
"""
from bigvl.evaluators.common import EVALUATORS, EvaluatorType, chance_levels, entries, run_evals

__all__ = ["EVALUATORS", "EvaluatorType", "chance_levels", "entries", "run_evals"]
