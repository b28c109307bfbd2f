"""Long-CLIP's way to fine-tune a short-context text tower to a long context.

`stretch_positions` turns a [L0, D] positional table into [L, D] by keeping the first
`keep` rows and stretching the rest r = (L - keep) / (L0 - keep) times by linear
interpolation (the last old row extrapolates along the last difference), e.g. 77 → 248
with keep = 20, r = 4. `freeze_rows` is the optax transform that keeps those first rows
exactly as loaded during fine-tuning (Long-CLIP trains only the stretched part).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax


def stretch_positions(table: np.ndarray, new_length: int, keep: int = 20) -> np.ndarray:
    """[L0, D] → [new_length, D]: rows < keep copied, rows ≥ keep stretched r× (r an integer).

    For old row p = keep + i (i < L0 - keep - 1) and j in [0, r): new[keep + r·i + j] =
    (1 - j/r)·old[p] + (j/r)·old[p + 1]; the last old row q extrapolates: new[keep + r·(L0-keep-1) + j]
    = old[q] + (j/r)·(old[q] - old[q - 1]). Raises ValueError naming the sizes if r is not whole.
    """
    table = np.asarray(table)
    old_length = table.shape[0]
    if not 0 < keep < old_length - 1 or (new_length - keep) % (old_length - keep):
        raise ValueError(f"cannot stretch {old_length} positions to {new_length} keeping {keep}: "
                         f"(new - keep) must be a whole multiple of (old - keep)")
    ratio = (new_length - keep) // (old_length - keep)
    frac = (np.arange(ratio) / ratio)[:, None]  # [r, 1]
    rest = table[keep:].astype(np.float64)
    nxt = np.concatenate([rest[1:], 2 * rest[-1:] - rest[-2:-1]])  # last row: extrapolate
    stretched = (1 - frac)[None] * rest[:, None] + frac[None] * nxt[:, None]  # [L0-keep, r, D]
    out = np.concatenate([table[:keep].astype(np.float64), stretched.reshape(-1, table.shape[1])])
    return out.astype(table.dtype)


def freeze_rows(path_regex: str, num_rows: int) -> optax.GradientTransformation:
    """Zeroes the updates of the first `num_rows` rows of params whose '/'-joined path matches.

    Put last in the optimizer chain (after weight decay) so those rows never change.
    """
    pattern = re.compile(path_regex)

    def update(updates, state, params=None):
        def mask(path, u):
            name = "/".join(str(getattr(k, "key", k)) for k in path)
            if u is None or u.ndim < 1 or not pattern.fullmatch(name):
                return u
            return u.at[:num_rows].set(jnp.zeros_like(u[:num_rows]))
        return jax.tree_util.tree_map_with_path(mask, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
