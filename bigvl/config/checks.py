"""Checks of a whole config that need no devices or files: choices, ranges, contradictions.

`validate` runs the schema check, then lets each stage check its own section (the caption
strategy, the objective, the model), then checks what crosses sections. Every problem is
one ConfigError naming the key.
"""
from __future__ import annotations

import logging

import jax
import ml_collections

from bigvl.config.errors import ConfigError, first_line
from bigvl.config.schema import check_schema
from bigvl.data.caption_strategies import make_caption_strategy
from bigvl.data.mixture import source_data_config, source_specs
from bigvl.evaluators import entries
from bigvl.evaluators.suites import unknown_suite
from bigvl.losses.objective import Objective
from bigvl.models import build_model
from bigvl.parallel.mesh import mesh_shape

log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "rsqrt", "constant")
MU_DTYPES = ("", "bfloat16", "float32")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks choices and ranges that need no devices or files; raises ConfigError."""
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key!r}: {message}")

    check_schema(config)

    check(0.0 < config.data.min_crop_scale <= 1.0, "data.min_crop_scale",
          f"{config.data.min_crop_scale} is not in (0, 1]")
    check(config.nonfinite in ("skip", "stop"), "nonfinite", f"{config.nonfinite!r} is not 'skip' or 'stop'")
    try:  # each stage checks its own section: the caption strategy, the objective, the model
        make_caption_strategy(config.data, count_tokens=len)
        for spec in source_specs(config.data):  # a bad entry names data.sources[i].KEY
            make_caption_strategy(source_data_config(config.data, spec), count_tokens=len)
        Objective.from_config(config)
        build_model(config.model)  # constructs the modules only: no params, no compilation
    except ValueError as e:
        raise ConfigError(first_line(e)) from None
    check(config.optim.schedule in SCHEDULES, "optim.schedule",
          f"{config.optim.schedule!r} is not one of {SCHEDULES}")
    for key in ("total_steps", "batch_size", "log_steps"):
        check(config[key] > 0, key, f"must be positive, got {config[key]}")
    check(config.optim.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {config.optim.warmup_steps}")
    if config.optim.warmup_steps >= config.total_steps:  # a short smoke run of a real config: allowed, said
        log.warning("optim.warmup_steps %d >= total_steps %d: the whole run is warmup, the learning rate "
                    "never reaches optim.lr", config.optim.warmup_steps, config.total_steps)
    check(config.optim.mu_dtype in MU_DTYPES, "optim.mu_dtype",
          f"{config.optim.mu_dtype!r} is not one of {MU_DTYPES}")
    accum = config.optim.grad_accum_steps
    check(accum >= 1, "optim.grad_accum_steps", f"must be >= 1, got {accum}")
    check(config.batch_size % accum == 0, "optim.grad_accum_steps",
          f"batch_size {config.batch_size} is not divisible by {accum} micro-batches")
    if accum > 1:
        try:
            shape = mesh_shape(config.mesh, jax.device_count())
        except ValueError:  # a bad mesh is reported by make_mesh
            shape = {"data": 1, "fsdp": 1}
        shards = shape["data"] * shape["fsdp"]
        check((config.batch_size // accum) % shards == 0, "optim.grad_accum_steps",
              f"micro-batch {config.batch_size} / {accum} = {config.batch_size // accum} is not "
              f"divisible by data x fsdp = {shards}")
    check(config.data.source in ("array_record", "tfds"), "data.source",
          f"{config.data.source!r} is not 'array_record' or 'tfds'")
    if config.data.source == "tfds":
        check(bool(config.data.tfds_name), "data.tfds_name", "data.source is 'tfds' but no dataset is named")
    elif not config.world.build:
        check(bool(config.data.train_paths) or bool(config.data.sources), "data.train_paths", "no training data given")
    check(not (config.data.sources and config.data.train_paths), "data.sources",
          "set data.train_paths = [] when data.sources is given (list those files as one more source)")
    if not config.world.build:
        check(bool(config.data.tokenizer), "data.tokenizer", "no tokenizer model given")
    check(not unknown_suite(config.evals.suites), "evals.suites", unknown_suite(config.evals.suites))
    for name, kind, entry in entries(config.evals, active_only=False):  # each evaluator entry with its type
        check(not entry.split or config.model.kind in kind.model_kinds, f"evals.{name}",
              f"type {entry.type!r} runs on model.kind {' | '.join(kind.model_kinds)}; model.kind is "
              f"{config.model.kind!r} (set evals.{name}.split='' to turn it off)")
        if kind.check is not None:
            try:
                kind.check(entry, config)
            except ValueError as e:
                raise ConfigError(f"config key 'evals.{name}': {first_line(e)}") from None
    check_contradictions(config)


def check_contradictions(config: ml_collections.ConfigDict) -> None:
    """Ranges that would fail deep in a run, and options that cross stages.

    Raises ConfigError naming the key: counts and intervals out of range; a `partial` token
    budget larger than the text context (K ≤ context_length). The loss, strategy and model
    sections check themselves (`validate`).
    """
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key!r}: {message}")

    for key, low in (("ckpt_steps", 1), ("keep_ckpts", 1), ("eval_steps", 0), ("data.num_workers", 0),
                     ("evals.batch_size", 1), ("min_free_disk_gb", 0)):
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        check(node[leaf] >= low, key, f"must be >= {low}, got {node[leaf]}")
    if config.data.caption_strategy == "partial":
        length = config.model.text.context_length
        check(config.data.partial_max_tokens <= length, "data.partial_max_tokens",
              f"a budget of {config.data.partial_max_tokens} tokens exceeds model.text.context_length "
              f"{length}: partial captions would be cut by the tokenizer; lower it or raise the context")
