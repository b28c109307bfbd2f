"""The tie rule every evaluator shares (zero-shot, retrieval, hard negatives, pointing).

Scores are cosines computed in float64 (`similarities`), and a candidate scoring within
`TIE_TOLERANCE` of the true one ties with it; ties count AGAINST the query (`rank_of_true`:
the number of candidates scoring ≥ the true one, minus itself). So a collapsed model (all
embeddings equal) ranks every true candidate last and scores at most chance everywhere,
however the matrix product rounds its equal scores (BLAS kernels round equal dot products
differently in different rows and columns: float32 scores of equal vectors differ by an ulp).
"""
from __future__ import annotations

import numpy as np

# Score differences up to this count as ties. Equal unit vectors give float64 dot products equal to
# ~1e-15 however they are summed; distinct float32 embeddings practically never come this close.
TIE_TOLERANCE = 1e-9


def similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [M,E], b [N,E] (any float dtype) → float64 [M,N] dot products (cosines of unit rows)."""
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64).T


def rank_of_true(scores: np.ndarray, true: np.ndarray) -> np.ndarray:
    """scores [Q,C], true [Q] (each query's true score, one of its row's) → int [Q] ranks from 0.

    rank = number of candidates scoring ≥ true − TIE_TOLERANCE, minus the true one: ties count against.
    """
    return (scores >= true[:, None] - TIE_TOLERANCE).sum(axis=1) - 1
