"""The config schema, loading `configs/NAME.py[:ARG]`, and `--config.key=value` overrides.

Every experiment config starts from `base_config()`, which holds every key bigvl reads
with its default, and changes values. The config is then locked: a key that is not in
the schema (a typo in a config file or on the command line) is a one-line error with the
nearest valid key, before any compilation.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from bigvl.models import model_config_defaults
from bigvl.sharding import DEFAULT_RULES


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and the problem."""


CAPTION_STRATEGIES = ("alt", "recap", "mix", "uniform", "partial", "multi", "long", "dual")
LOSSES = ("softmax", "sigmoid", "softmax_tiled", "sigmoid_ring")
MULTI_TEXT_LOSSES = ("per_text", "multi_positive")
SCHEDULES = ("cosine", "rsqrt", "constant")


def base_config() -> ml_collections.ConfigDict:
    """Every key bigvl reads, with its default. Experiment configs override values."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 256  # global, over all hosts and devices
    c.log_steps = 50
    c.eval_steps = 500  # 0 = evaluate only at the end
    c.ckpt_steps = 500
    c.keep_ckpts = 2
    c.progress_bar = True
    c.report = False  # print a results table and write curves.png at the end
    # A step whose loss, gradients or updated params are not finite: "skip" leaves params
    # and optimizer state unchanged and counts it (metric skipped_steps); "stop" ends the
    # run naming the step, before any checkpoint of it is written.
    c.nonfinite = "stop"

    # Mesh axes (data, fsdp, tensor); -1 = all remaining devices. Rules map the logical
    # axis names that params and activations carry to mesh axes.
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.sharding_rules = [list(rule) for rule in DEFAULT_RULES]

    c.world = ml_collections.ConfigDict()  # the built-in synthetic recaptioned world
    c.world.build = False  # build (or reuse) it in world.dir before training
    c.world.dir = ""
    c.world.seed = 0
    c.world.num_train = 20000
    c.world.image_size = 64

    c.data = ml_collections.ConfigDict()
    c.data.train_paths = []  # ArrayRecord files or globs
    c.data.tokenizer = ""  # sentencepiece model file
    c.data.caption_strategy = "mix"
    c.data.caption_field = "short"  # the synthetic caption `recap` and `mix` use
    c.data.mix_p = 0.2  # P(synthetic caption) for `mix`
    # Strategies with several texts per image (see bigvl/data/caption_strategies.py).
    c.data.uniform_fields = ["alt", "rewrite_0", "rewrite_1"]  # LaCLIP: alt-text or a rewrite
    c.data.uniform_min_words = 2  # shorter picks fall back to the alt-text
    c.data.partial_max_tokens = 32  # CLIPS: whole sentences of the long caption up to K tokens
    c.data.partial_field = "long"
    c.data.partial_with_alt = True  # the alt-text as a second positive
    c.data.partial_keep_order = False
    c.data.multi_k = 6  # DreamLIP: k sentences of the long caption + the raw text
    c.data.multi_field = "long"
    c.data.multi_with_raw = True
    c.data.multi_raw_field = "alt"
    c.data.long_field = "long"  # Long-CLIP: the long caption and its first sentence
    c.data.min_crop_scale = 0.8  # random resized crop area range [min, 1]
    c.data.num_workers = 0  # grain multiprocessing workers (0 = in process)
    c.data.prefetch_buffer = 2

    c.model = model_config_defaults()

    c.loss = ml_collections.ConfigDict()
    # softmax | sigmoid: plain global-batch losses (B×B logits); softmax_tiled (Inf-CL style)
    # | sigmoid_ring: ring over the batch axes, O(b·D + tile²) memory per device.
    c.loss.name = "softmax"
    c.loss.tile_size = 1024  # tile edge of softmax_tiled / sigmoid_ring
    # With T > 1 texts per image: the mean (or `text_weights`-weighted sum) of per-text
    # InfoNCE terms, or one loss where every text of an image is a positive.
    c.loss.multi_text = "per_text"
    c.loss.text_weights = []  # [] = equal weights (mean); else one weight per text

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 100
    c.optim.schedule = "cosine"
    c.optim.end_lr_frac = 0.0  # cosine floor as a fraction of lr
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.2
    c.optim.clip_norm = 1.0  # 0 = no clipping
    # Params whose path matches one of these regexes get no weight decay; params with
    # fewer than 2 dims (biases, norm scales, temperature) never do.
    c.optim.no_decay = [".*/bias", ".*pos_embedding.*", ".*cls_token.*", ".*probe.*"]

    c.evals = ml_collections.ConfigDict()
    c.evals.batch_size = 256
    c.evals.zeroshot = ""  # ArrayRecord with extras.label
    c.evals.zeroshot_classes = ""  # JSON {classnames, templates}
    c.evals.retrieval = ""  # ArrayRecord with captions
    c.evals.retrieval_field = "short"
    c.evals.hard_negatives = ""  # ArrayRecord with extras.positive/negatives
    return c


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:ARG]` by calling its `get_config(ARG)`; returns it locked."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except AttributeError as e:  # a locked base config rejects unknown keys
        raise ConfigError(f"config file {path!r}: {_first_line(e)}") from None
    config.lock()
    return config


def _first_line(e: Exception) -> str:
    return str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'").splitlines()[0]


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `key.sub=value` strings in place, typed by the existing value.

    Raises ConfigError naming the key for an unknown key (with the nearest valid one) or a
    value that does not parse as the key's type.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        *parents, leaf = key.split(".")
        node = config
        for depth, name in enumerate(parents + [leaf]):
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                prefix = ".".join(parents[:depth])
                keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                near = difflib.get_close_matches(name, keys, n=1)
                hint = f"; did you mean {'.'.join(filter(None, [prefix, near[0]]))!r}?" if near else ""
                raise ConfigError(f"unknown config key {key!r}{hint}")
            if depth < len(parents):
                node = node[name]
        old = node[leaf]
        with node.unlocked():
            node[leaf] = _parse_like(old, text, key)


def _parse_like(old: Any, text: str, key: str) -> Any:
    if text in ("None", "none") and not isinstance(old, str):
        return None
    try:
        if isinstance(old, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
        if isinstance(old, str):
            return text
        value = ast.literal_eval(text)
        if isinstance(old, (list, tuple)) and not isinstance(value, (list, tuple)):
            raise ValueError
        return list(value) if isinstance(old, list) else value
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"config key {key!r} expects {type(old).__name__}, got {text!r}") from None


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks choices and ranges that need no devices or files; raises ConfigError."""
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"config key {key!r}: {message}")

    check(config.data.caption_strategy in CAPTION_STRATEGIES, "data.caption_strategy",
          f"{config.data.caption_strategy!r} is not one of {CAPTION_STRATEGIES}")
    check(0.0 <= config.data.mix_p <= 1.0, "data.mix_p", f"{config.data.mix_p} is not in [0, 1]")
    check(0.0 < config.data.min_crop_scale <= 1.0, "data.min_crop_scale",
          f"{config.data.min_crop_scale} is not in (0, 1]")
    check(config.nonfinite in ("skip", "stop"), "nonfinite", f"{config.nonfinite!r} is not 'skip' or 'stop'")
    check(config.loss.name in LOSSES, "loss.name", f"{config.loss.name!r} is not one of {LOSSES}")
    check(config.loss.multi_text in MULTI_TEXT_LOSSES, "loss.multi_text",
          f"{config.loss.multi_text!r} is not one of {MULTI_TEXT_LOSSES}")
    from bigvl.data.caption_strategies import make_caption_strategy
    num_texts = make_caption_strategy(config.data, count_tokens=len).num_texts
    if num_texts > 1:
        check(config.loss.name == "softmax", "loss.name",
              f"caption strategy {config.data.caption_strategy!r} gives {num_texts} texts per image; "
              "only the plain softmax loss takes several")
        check(len(config.loss.text_weights) in (0, num_texts), "loss.text_weights",
              f"needs {num_texts} weights (one per text of {config.data.caption_strategy!r}) or none")
    check(config.optim.schedule in SCHEDULES, "optim.schedule",
          f"{config.optim.schedule!r} is not one of {SCHEDULES}")
    for key in ("total_steps", "batch_size", "log_steps"):
        check(config[key] > 0, key, f"must be positive, got {config[key]}")
    check(config.optim.warmup_steps <= config.total_steps, "optim.warmup_steps",
          f"{config.optim.warmup_steps} exceeds total_steps {config.total_steps}")
    if not config.world.build:
        check(bool(config.data.train_paths), "data.train_paths", "no training data given")
        check(bool(config.data.tokenizer), "data.tokenizer", "no tokenizer model given")
