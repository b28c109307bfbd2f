"""Starting from another run's params (fine-tuning), and adapting them to this model.

`adapt_params` maps a source params tree onto this model's (same paths and shapes), except
the text positional table, which may be shorter: Long-CLIP's way to fine-tune a short-context
text tower to a long context. `stretch_positions` turns a [L0, D] table into [L, D] by keeping
the first `keep` rows and stretching the rest r = (L - keep) / (L0 - keep) times by linear
interpolation (the last old row extrapolates along the last difference), e.g. 77 → 248 with
keep = 20, r = 4. The optimizer's `freeze_rows` keeps those first rows exactly as loaded during
fine-tuning (Long-CLIP trains only the stretched part).
"""
from __future__ import annotations

import logging

import jax
import numpy as np

from bigvl.models import param_path


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


log = logging.getLogger(__name__)

TEXT_POSITIONS = "text/pos_embedding"


def adapt_params(source: dict, target: dict, stretch_keep: int = 20) -> dict:
    """`source` params reshaped onto the structure and shapes of `target` (arrays or ShapeDtypeStructs).

    Every target param must exist in the source with the same shape, except the text
    positional table, which may be shorter and is then stretched (long_context.stretch_positions).
    Returns host NumPy arrays in the target dtypes. Raises ValueError naming the first
    param that is missing or does not fit.
    """
    flat_source = {param_path(p): v for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}

    def pick(path, want):
        name = param_path(path)
        if name not in flat_source:
            raise ValueError(f"init.workdir: param {name!r} is not in the source run")
        have = np.asarray(jax.device_get(flat_source[name]))
        if have.shape != tuple(want.shape):
            if name == TEXT_POSITIONS and have.ndim == 2 and have.shape[1] == want.shape[1]:
                log.info("stretching %s from %d to %d positions (first %d kept)", name, have.shape[0],
                         want.shape[0], stretch_keep)
                have = stretch_positions(have, want.shape[0], keep=stretch_keep)
            else:
                raise ValueError(f"init.workdir: param {name!r} has shape {have.shape} in the source "
                                 f"run but {tuple(want.shape)} here")
        return have.astype(want.dtype)

    return jax.tree_util.tree_map_with_path(pick, target)
