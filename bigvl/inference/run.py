"""Loading a trained run for inference: config + params from a workdir, no optimizer state."""
from __future__ import annotations

import dataclasses
import json
import os

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp

from bigvl.config import base_config
from bigvl.data.tokenizer import Tokenizer
from bigvl.inference.encoder import Encoder, make_encoder
from bigvl.models import build_model
from bigvl.parallel.mesh import logical_shardings, make_mesh, rules_from_config


@dataclasses.dataclass
class Run:
    config: ml_collections.ConfigDict
    step: int
    model: nn.Module
    params: dict
    encoder: Encoder


def load_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`, over the current schema's defaults."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a bigvl workdir?")
    with open(path) as f:
        saved = json.load(f)
    config = base_config()
    config.update_from_flattened_dict(_flatten(saved))
    return config


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_run(workdir: str, step: int | None = None, mesh_shape: dict | None = None) -> Run:
    """Restores the params of `workdir` (latest step unless `step`) onto a mesh (default: all data)."""
    config = load_config_json(workdir)
    mesh = make_mesh(mesh_shape or {"data": -1, "fsdp": 1, "tensor": 1})
    rules = rules_from_config(config.sharding_rules)
    model = build_model(config.model)
    size, length = config.model.image.image_size, config.model.text.context_length
    images, tokens = jax.numpy.zeros((1, size, size, 3), "uint8"), jax.numpy.zeros((1, length), "int32")
    boxed = jax.eval_shape(lambda r: model.init(r, images, tokens)["params"], jax.random.key(0))
    shardings = logical_shardings(boxed, mesh, rules)
    abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                            nn.unbox(boxed), shardings)
    ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
    with ocp.CheckpointManager(ckpt_dir) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            {"params": abstract}, restore_args=jax.tree.map(
                lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), {"params": abstract}),
            partial_restore=True)))
    params = restored["state"]["params"]
    encoder = make_encoder(model, params, Tokenizer(config.data.tokenizer), config.model, mesh, rules,
                           config.evals.batch_size)
    return Run(config=config, step=step, model=model, params=params, encoder=encoder)
