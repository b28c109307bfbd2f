"""Writing an imported model as a bigvl workdir, and reading a workdir's params for export.

A converted workdir is what a training run leaves, minus the optimizer: `config.json` (the full
schema, `bigvl.config.base_config`, with the imported `model` section and `data.tokenizer`) and
`checkpoints/0/` with `state/` = {"params": ...} and `meta/` (bigvl/inference/checkpoint_format.py).
`bigvl.load`, `python -m bigvl.evaluate` and `init.workdir` read it as they read a run
(they restore the params alone).
"""
from __future__ import annotations

import os
import shutil
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from bigvl.config import base_config
from bigvl.convert.layout import flatten, unflatten
from bigvl.inference.checkpoint_format import META_ITEM, meta
from bigvl.inference.run import read_run_config, restore_merged
from bigvl.models import build_model, dummy_inputs, param_path
from bigvl.models.locca import locca_enabled, strip_locca
from bigvl.models.pretrained import unstack_layers
from bigvl.parallel.mesh import make_mesh, rules_from_config
from bigvl.parallel.storage import run_str

ARCH_KEYS = ("kind", "embed_dim", "activation", "layer_norm_eps", "temperature_init", "bias_init",
             "max_logit_scale")


def model_config(overrides: Mapping):
    """The full config (`base_config`) with `overrides` (nested dict) over its `model` section.
    Raises KeyError / TypeError naming a key the schema lacks or a value of the wrong type."""
    config = base_config()
    config.model.update(dict(overrides))
    return config


def check_params(model_cfg, flat: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """`flat` params checked against the param tree `build_model(model_cfg)` makes (same paths, same
    shapes), cast to its dtypes. Raises ValueError naming the first param that differs."""
    model = build_model(model_cfg)
    images, tokens = dummy_inputs(model_cfg)
    shapes = jax.eval_shape(lambda r: nn.unbox(model.init(r, images, tokens)["params"]), jax.random.key(0))
    want = {param_path(p): s for p, s in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    for name, s in want.items():
        if name not in flat:
            raise ValueError(f"{what}: bigvl param {name!r} {tuple(s.shape)} was not produced by the conversion")
        if tuple(flat[name].shape) != tuple(s.shape):
            raise ValueError(f"{what}: bigvl param {name!r} has shape {tuple(flat[name].shape)}, the model "
                             f"wants {tuple(s.shape)}")
    extra = sorted(set(flat) - set(want))
    if extra:
        raise ValueError(f"{what}: params {extra[:3]} have no place in the model the config describes")
    return {name: np.asarray(flat[name]).astype(want[name].dtype) for name in want}


def write_workdir(out: str, config, flat: Mapping[str, np.ndarray], tokenizer: str | None) -> str:
    """Writes `out`/config.json and `out`/checkpoints/0 (the params) for `config` (full schema).

    tokenizer: a tokenizer file, copied into `out` and named by data.tokenizer (None: keep the
    config's). Refuses to write over a workdir that already holds checkpoints. Returns `out`.
    """
    ckpt_dir = os.path.abspath(os.path.join(out, "checkpoints"))
    if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        raise FileExistsError(f"{out!r} already holds checkpoints; convert into a new directory")
    params = check_params(config.model, flat, f"writing {out}")
    os.makedirs(out, exist_ok=True)
    if tokenizer:
        if not os.path.isfile(tokenizer):
            raise FileNotFoundError(f"tokenizer {tokenizer!r} does not exist")
        name = os.path.basename(tokenizer)
        shutil.copyfile(tokenizer, os.path.join(out, name))
        config.data.tokenizer = os.path.abspath(os.path.join(out, name))
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    tree = jax.tree.map(jnp.asarray, unflatten(params))
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    with ocp.CheckpointManager(ckpt_dir, options=options) as manager:
        manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": tree}),
                                                **{META_ITEM: ocp.args.JsonSave(meta())}))
        manager.wait_until_finished()
    return out


def read_params(workdir: str, step: int | None = None):
    """(config, flat params {path: np.ndarray} with unrolled encoders, step) of a bigvl workdir."""
    config = read_run_config(workdir)
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    # a LoRA run exports its merged kernels
    params, config.model, step = restore_merged(workdir, config.model, mesh, rules_from_config(config.sharding_rules), step)
    if locca_enabled(config.model):  # SigLIP 2 drops its LocCa decoder after pretraining
        params, config.model = strip_locca(params, config.model)
    params = unstack_layers(jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params))
    return config, flatten(params), step


def finetune_flags(workdir: str, skip: Sequence[str] = ()) -> list[str]:
    """`--config.KEY=VALUE` words that make a training config start from the converted `workdir`: its
    architecture (every `model.image.*` / `model.text.*` key, `embed_dim`, `activation`, `layer_norm_eps`,
    `temperature_init`, `bias_init`, `max_logit_scale`; not dtype, remat or the like), its `data.tokenizer`
    and `init.workdir`.
    Keys in `skip` (e.g. model.text.context_length for Long-CLIP's 248) are left to the config. Words
    hold no whitespace, so `$(python -m bigvl.convert flags ...)` splits them right; ValueError otherwise."""
    config = read_run_config(workdir)
    model = config.model.to_dict()
    keys = {f"{tower}/{k}": v for tower in ("image", "text") for k, v in model[tower].items()}
    keys.update({k: model[k] for k in ARCH_KEYS})
    values = {"model." + k.replace("/", "."): v for k, v in sorted(keys.items())}
    values.update({"data.tokenizer": config.data.tokenizer, "init.workdir": run_str(workdir)})
    words = []
    for name, value in values.items():
        if name in skip:
            continue
        text = repr(value).replace(" ", "") if isinstance(value, tuple) else str(value)
        if any(c.isspace() for c in text):
            raise ValueError(f"{name} = {text!r} holds whitespace; give it as --config.{name}=... yourself")
        words.append(f"--config.{name}={text}")
    return words
