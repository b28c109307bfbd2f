"""Starting a run from another run's params (fine-tuning), e.g. Long-CLIP's 77 → 248 positions."""
from __future__ import annotations

import logging

import jax
import numpy as np

from bigvl.long_context import stretch_positions
from bigvl.optimizer import param_path

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


def load_init_params(init_cfg, params: dict) -> dict:
    """The params of run `init_cfg.workdir` (latest step), adapted to and placed like `params`."""
    from bigvl.checkpoint_loading import load_run  # heavy: only when fine-tuning
    source = load_run(init_cfg.workdir)
    log.info("initialising from %s step %d", init_cfg.workdir, source.step)
    adapted = adapt_params(source.params, params, init_cfg.stretch_keep)
    return jax.tree.map(lambda a, p: jax.device_put(a, p.sharding), adapted, params)
