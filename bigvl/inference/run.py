"""Loading a trained run for inference: config + params from a workdir, no optimizer state.

    run = load_run("workdirs/demo")                 # reads workdir/config.json itself
    run = load_run(workdir, config=full_config)     # the CLI passes bigvl.config.load_config_json(workdir)
    params, step = restore_params(workdir, abstract_params)   # the params alone (fine-tuning init)

This stage does not know the full config schema (bigvl.config, the CLI stage): without a
`config`, `read_run_config` takes `workdir/config.json` as saved, fills its `model`
section over `bigvl.models.model_config_defaults()` and defaults the few other keys
inference reads (`INFERENCE_DEFAULTS`) where an older config.json lacks them. A config.json
written before evaluators were `evals.NAME = {type, ...}` entries (flat keys `evals.zeroshot`,
`evals.captioning_max_length`, ...) is converted on read (`convert_flat_evals`); the decode
options of a run's captioner are `bigvl.inference.run_config.captioning_entry(config)`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp

from bigvl.data.tokenizer import Tokenizer
from bigvl.inference import frozen_store
from bigvl.inference.checkpoint_format import check_format
from bigvl.inference.encoder import Encoder, make_encoder
from bigvl.inference.run_config import convert_flat_evals
from bigvl.models import build_model, dummy_inputs, model_config_defaults
from bigvl.models.lora import lora_enabled, merge_lora
from bigvl.parallel.mesh import DEFAULT_RULES, logical_shardings, make_mesh, rules_from_config
from bigvl.parallel.storage import run_path

log = logging.getLogger(__name__)

# The keys besides `model` that inference reads, with the values a config.json lacking them gets
# (the schema's defaults in bigvl.config.base_config).
INFERENCE_DEFAULTS = {
    "data": {"tokenizer": ""},
    "sharding_rules": [list(rule) for rule in DEFAULT_RULES],
    "evals": {"batch_size": 256},
}


class NoTokenizer:
    """The tokenizer of a run whose `data.tokenizer` is empty (e.g. an HF directory imported without
    tokenizer files) or does not match its model (`reason`): images encode; any text use raises one
    ValueError naming data.tokenizer (and the mismatch)."""

    def __init__(self, workdir: str, reason: str = ""):
        self.workdir, self.reason = workdir, reason

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("workdir", "reason"):
            raise AttributeError(name)
        if self.reason:
            raise ValueError(f"{self.workdir!r}: its tokenizer does not fit its model ({self.reason}); "
                             "set data.tokenizer in its config.json to the model's tokenizer file")
        raise ValueError(f"{self.workdir!r} has no tokenizer (data.tokenizer is empty in its config.json): "
                         "set data.tokenizer to a tokenizer file (sentencepiece .model, CLIP BPE .txt.gz or "
                         "HF tokenizer.json), or import with `bigvl convert import --tokenizer FILE`")


def model_tokenizer(config, workdir: str):
    """The run's tokenizer as its model reads text (`Tokenizer.for_model`: the model's pad id and text
    normalisation, vocabulary / BOS / EOS checked); a `NoTokenizer` (image use only, text use raises,
    one warning now) when data.tokenizer is empty or does not fit the model."""
    if not config.data.tokenizer:
        return NoTokenizer(workdir)
    try:
        return Tokenizer.for_model(config.data.tokenizer, config.model.text)
    except ValueError as e:
        log.warning("%s: text encoding is off, the tokenizer does not fit the model: %s", workdir, e)
        return NoTokenizer(workdir, str(e))


@dataclasses.dataclass
class Run:
    config: ml_collections.ConfigDict
    step: int
    model: nn.Module
    params: dict
    encoder: Encoder


def read_config_json(workdir: str) -> dict:
    """`workdir/config.json` as the run saved it (nested dicts); FileNotFoundError if there is none."""
    path = run_path(workdir) / "config.json"  # a local directory or a bucket (gs://...)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a bigvl workdir?")
    saved = json.loads(path.read_text())
    if isinstance(saved.get("evals"), dict):
        saved["evals"] = convert_flat_evals(saved["evals"])
    return saved


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
    """`workdir/config.json` as saved, its `model` section over `model_config_defaults()`.

    Keys of `INFERENCE_DEFAULTS` missing from the file get those defaults; every other
    section is kept as saved. Raises FileNotFoundError when there is no config.json, and
    KeyError / TypeError for a model key the schema does not have or a value of the wrong type.
    """
    saved = read_config_json(workdir)
    model = model_config_defaults()
    model.lock()  # an unknown model key is an error, as with the full schema
    model.update(saved.pop("model", {}))
    model.unlock()
    config = ml_collections.ConfigDict(saved)
    config.model = model
    for key, default in INFERENCE_DEFAULTS.items():
        if isinstance(default, dict):
            section = config.get(key)
            if section is None:
                config[key] = section = ml_collections.ConfigDict()
            for name, value in default.items():
                if name not in section:
                    section[name] = value
        elif key not in config:
            config[key] = default
    return config


def abstract_params(model: nn.Module, model_cfg, mesh: jax.sharding.Mesh, rules) -> Any:
    """The params tree of `model` as ShapeDtypeStructs carrying their NamedShardings on `mesh` (no memory)."""
    images, tokens = dummy_inputs(model_cfg)
    boxed = jax.eval_shape(lambda r: model.init(r, images, tokens)["params"], jax.random.key(0))
    shardings = logical_shardings(boxed, mesh, rules)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        nn.unbox(boxed), shardings)


def restore_params(workdir: str, abstract: Any, step: int | None = None) -> tuple[Any, int]:
    """(params, step): the params of `workdir`'s checkpoint `step` (default: the latest), no optimizer state.
    A run with frozen params keeps them once in WORKDIR/frozen_params (bigvl/inference/frozen_store.py): merged.

    abstract: the params tree as ShapeDtypeStructs with shardings (`abstract_params`, or the
    trainer's own); each leaf is restored onto its sharding. Raises FileNotFoundError when
    the workdir holds no checkpoint, CheckpointVersionError for a format this code does not know.
    """
    ckpt_dir = run_path(workdir) / "checkpoints"
    with ocp.CheckpointManager(ckpt_dir) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
        check_format(ckpt_dir / str(step))  # an unknown format: one line, before restoring
        spec = frozen_store.read_spec(workdir)  # a run with frozen params: its steps hold the rest
        stepped, frozen = (abstract, None) if spec is None else frozen_store.split_by_spec(abstract, spec)
        target = {"params": stepped}
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), target),
            partial_restore=True)))
    params = restored["state"]["params"]
    if spec is not None:
        params = frozen_store.merge(params, frozen_store.restore_frozen(workdir, frozen))
    return params, step


def restore_merged(workdir: str, model_cfg, mesh: jax.sharding.Mesh, rules,
                   step: int | None = None) -> tuple[Any, ml_collections.ConfigDict, int]:
    """(params, model config, step) of `workdir`'s checkpoint `step` (`restore_params`); a LoRA run's
    adapters merged into its kernels (`merge_lora`), with the merged model config (else `model_cfg` itself)."""
    params, step = restore_params(workdir, abstract_params(build_model(model_cfg), model_cfg, mesh, rules), step)
    if lora_enabled(model_cfg):
        params, model_cfg = merge_lora(params, model_cfg)
    return params, model_cfg, step


def load_run(workdir: str, step: int | None = None, mesh_shape: dict | None = None,
             config: ml_collections.ConfigDict | None = None) -> Run:
    """Restores the params of `workdir` (latest step unless `step`) onto a mesh (default: all data).

    config: the run's config; None reads it from `workdir/config.json` (`read_run_config`). An empty
    `data.tokenizer` loads a `NoTokenizer`: image-only use works, text use raises naming data.tokenizer.
    """
    config = read_run_config(workdir) if config is None else config
    mesh = make_mesh(mesh_shape or {"data": -1, "fsdp": 1, "tensor": 1})
    rules = rules_from_config(config.sharding_rules)
    params, model_cfg, step = restore_merged(workdir, config.model, mesh, rules, step)
    if model_cfg is not config.model:  # a LoRA run: the plain model runs its merged kernels
        config = ml_collections.ConfigDict(config.to_dict())
        config.model = model_cfg
    model = build_model(config.model)
    tokenizer = model_tokenizer(config, workdir)
    encoder = make_encoder(model, params, tokenizer, config.model, mesh, rules,
                           config.evals.batch_size)
    return Run(config=config, step=step, model=model, params=params, encoder=encoder)
