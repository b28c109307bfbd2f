"""Reading a params tree: its size and its '/'-joined paths (the names checkpoints and converters use)."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


def count_params(params) -> int:
    """Number of scalars in a params tree (arrays, ShapeDtypeStructs, or boxed leaves)."""
    leaves = jax.tree.leaves(nn.unbox(params))
    return int(sum(int(np.prod(leaf.shape)) for leaf in leaves))


def param_path(path) -> str:
    """A tree path as '/'-joined module names, e.g. 'image/block_3/mlp/Dense_0/kernel'."""
    return "/".join(str(getattr(k, "key", k)) for k in path)
