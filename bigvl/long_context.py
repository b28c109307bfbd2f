"""Long-CLIP's way to fine-tune a short-context text tower to a long context.

`stretch_positions` turns a [L0, D] positional table into [L, D] by keeping the first
`keep` rows and stretching the rest r = (L - keep) / (L0 - keep) times by linear
interpolation (the last old row extrapolates along the last difference), e.g. 77 → 248
with keep = 20, r = 4. `bigvl.optimizer.freeze_rows` keeps those first rows exactly as loaded
during fine-tuning (Long-CLIP trains only the stretched part).
"""
from __future__ import annotations

import numpy as np


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
