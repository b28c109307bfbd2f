"""The train state: its one definition and its one constructor (fresh, or from another run's params)."""
from __future__ import annotations

import logging

import jax

from bigvl.inference.run import load_run
from bigvl.models.pretrained import adapt_params

log = logging.getLogger(__name__)


def load_init_params(init_cfg, params: dict) -> dict:
    """The params of run `init_cfg.workdir` (latest step), adapted to and placed like `params`."""
    source = load_run(init_cfg.workdir)
    log.info("initialising from %s step %d", init_cfg.workdir, source.step)
    adapted = adapt_params(source.params, params, init_cfg.stretch_keep)
    return jax.tree.map(lambda a, p: jax.device_put(a, p.sharding), adapted, params)
