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
import re
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections

from bigvl.data.caption_strategies import make_caption_strategy, strategy_config_defaults
from bigvl.evaluators.suites import unknown_suite
from bigvl.inference.run import read_config_json
from bigvl.losses.objective import Objective, loss_config_defaults
from bigvl.models import build_model, model_config_defaults
from bigvl.parallel.mesh import DEFAULT_RULES, mesh_shape


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and the problem."""


SCHEDULES = ("cosine", "rsqrt", "constant")
MU_DTYPES = ("", "bfloat16", "float32")


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
    c.min_free_disk_gb = 1.0  # start-up check: free space (GiB) on the workdir's disk
    # One line per step and host, the record ids it consumed: workdir/example_ids/ (run_logs.py)
    c.log_example_ids = True
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
    c.world.caption_fraction = 1.0  # train records with captions (the rest: alt-text only)
    c.world.scene = ml_collections.ConfigDict(dict(  # how scenes look: bigvl/data/world/scene.py SceneStyle
        shape_scale=1.0, max_objects=4, rotation=True, textured=True, p_same_colour=0.0,
        num_object_weights=(0.2, 0.3, 0.3, 0.2), p_caption_background=(0.7, 0.4)))

    c.data = ml_collections.ConfigDict()
    c.data.train_paths = []  # ArrayRecord files or globs
    c.data.tokenizer = ""  # sentencepiece model file
    # Where training examples come from: "array_record" (data.train_paths) or "tfds" (a TFDS dataset
    # prepared as array_record, read by index; field mapping in bigvl/data/tfds_source.py).
    c.data.source = "array_record"
    c.data.tfds_name = ""  # e.g. "coco_captions" (a name[/config][:version] in tfds_data_dir)
    c.data.tfds_split = "train"
    c.data.tfds_data_dir = ""  # "" = TFDS's default (~/tensorflow_datasets)
    c.data.tfds_image_key = "image"
    c.data.tfds_alt_key = ""  # feature path of the alt-text; "" = none
    c.data.tfds_captions = []  # ["NAME=feature/path", ...], e.g. ["short=captions/text"]
    # How each example's texts are drawn (bigvl/data/caption_strategies.py): data.caption_strategy
    # names one, and each strategy's parameters are keys of this section with the strategy's own
    # defaults (caption_field, mix_p, uniform_*, partial_*, multi_*, long_field, first_sentence_field).
    c.data.update(strategy_config_defaults())
    # Captioners (model.kind coca | clips): the caption the decoder learns to write, as
    # batch["target_tokens"] [b, model.decoder.context_length]; "" = the (first) contrastive text.
    c.data.target_field = ""
    c.data.min_crop_scale = 0.8  # random resized crop area range [min, 1]
    c.data.num_workers = 0  # grain multiprocessing workers (0 = in process)
    c.data.prefetch_buffer = 2

    c.model = model_config_defaults()

    c.loss = loss_config_defaults()  # every key documented in bigvl/losses/objective.py

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
    # Micro-batches per step: the loss is still over the whole batch (GradCache, exact full-batch
    # gradient; see bigvl/train/grad_accumulation.py); batch_size / K must split over data x fsdp.
    c.optim.grad_accum_steps = 1
    c.optim.mu_dtype = ""  # Adam first moment dtype: '' (= params dtype) | 'bfloat16' | 'float32'
    # Params whose path matches one of these regexes get no weight decay; params with
    # fewer than 2 dims (biases, norm scales, temperature) never do.
    c.optim.no_decay = [".*/bias", ".*pos_embedding.*", ".*cls_token.*", ".*probe.*"]
    c.optim.freeze_text_positions = 0  # Long-CLIP: rows of text/pos_embedding never updated (20)

    # Start a fresh run from another run's params (fine-tuning). A text positional table
    # shorter than model.text.context_length is stretched Long-CLIP style (long_context.py),
    # keeping its first `stretch_keep` rows.
    c.init = ml_collections.ConfigDict()
    c.init.workdir = ""  # a bigvl workdir; its latest checkpoint's params
    c.init.stretch_keep = 20

    c.evals = ml_collections.ConfigDict()
    c.evals.batch_size = 256
    c.evals.zeroshot = ""  # ArrayRecord with extras.label
    c.evals.zeroshot_classes = ""  # JSON {classnames, templates}
    c.evals.retrieval = ""  # ArrayRecord with captions
    c.evals.retrieval_field = "short"
    c.evals.long_retrieval_field = ""  # also retrieve with these (long) captions as queries; "" = off
    c.evals.hard_negatives = ""  # ArrayRecord with extras.positive/negatives
    c.evals.pointing = ""  # ArrayRecord whose records carry extras.regions (e.g. the synthetic world's retrieval split): text→patch pointing game
    # Captioners: CIDEr-D / BLEU-4 of decoded captions against captions[captioning_field]
    c.evals.captioning = ""  # ArrayRecord with captions (e.g. the retrieval split); "" = off
    c.evals.captioning_field = "short"
    c.evals.captioning_max_length = 32  # decode length (≤ model.decoder.context_length)
    c.evals.captioning_method = "greedy"  # greedy | beam
    c.evals.captioning_beam_size = 4
    # Published benchmarks (bigvl.evaluators.suites.SUITES), e.g. "wds/imagenet1k,karpathy/coco"; "" = off
    c.evals.suites = ""
    c.evals.data_dir = ""
    return c


def config_variants(arg: str, known: Sequence[str]) -> set[str]:
    """The comma-separated variants after a config's colon (`configs/x.py:a,b`); ConfigError names
    an unknown one and the known ones (a typo must not silently train the base config)."""
    variants = set(filter(None, arg.split(",")))
    unknown = sorted(variants - set(known))
    if unknown:
        raise ConfigError(f"unknown config variant {unknown[0]!r}; this config knows {', '.join(known) or 'none'}")
    return variants


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
    except ConfigError as e:
        raise ConfigError(f"config file {path!r}: {e}") from None
    except AttributeError as e:  # a locked base config rejects unknown keys
        raise ConfigError(f"config file {path!r}: {_first_line(e)}") from None
    except TypeError as e:  # ml_collections' type-safe assignment: `c.batch_size = "64"`
        raise ConfigError(f"config file {path!r}: {_type_error_line(e)}") from None
    config.lock()
    return config


def _first_line(e: Exception) -> str:
    return str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'").splitlines()[0]


def split_overrides(args: Sequence[str]) -> list[str]:
    """Command-line words `--config.key=value` → ['key=value', ...]; ConfigError for any other word."""
    overrides = []
    for item in args:
        if not item.startswith("--config."):
            raise ConfigError(f"unrecognised argument {item!r} (config overrides are --config.key=value)")
        key_value = item[len("--config."):]
        if "=" not in key_value:
            raise ConfigError(f"override {item!r} needs a value: --config.{key_value}=VALUE")
        overrides.append(key_value)
    return overrides


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

    check_schema(config)

    check(0.0 < config.data.min_crop_scale <= 1.0, "data.min_crop_scale",
          f"{config.data.min_crop_scale} is not in (0, 1]")
    check(config.nonfinite in ("skip", "stop"), "nonfinite", f"{config.nonfinite!r} is not 'skip' or 'stop'")
    try:  # each stage checks its own section: the caption strategy, the objective, the model
        make_caption_strategy(config.data, count_tokens=len)
        Objective.from_config(config)
        build_model(config.model)  # constructs the modules only: no params, no compilation
    except ValueError as e:
        raise ConfigError(_first_line(e)) from None
    check(config.optim.schedule in SCHEDULES, "optim.schedule",
          f"{config.optim.schedule!r} is not one of {SCHEDULES}")
    for key in ("total_steps", "batch_size", "log_steps"):
        check(config[key] > 0, key, f"must be positive, got {config[key]}")
    check(config.optim.warmup_steps <= config.total_steps, "optim.warmup_steps",
          f"{config.optim.warmup_steps} exceeds total_steps {config.total_steps}")
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
        check(bool(config.data.train_paths), "data.train_paths", "no training data given")
    if not config.world.build:
        check(bool(config.data.tokenizer), "data.tokenizer", "no tokenizer model given")
    check(not unknown_suite(config.evals.suites), "evals.suites", unknown_suite(config.evals.suites))
    if config.model.kind != "two_tower":  # captioners: bigvl/models/captioners.py
        check(not config.evals.pointing, "evals.pointing",
              f"the pointing game reads two-tower patch embeddings; model.kind is {config.model.kind!r}")
        check(config.evals.captioning_max_length <= config.model.decoder.context_length,
              "evals.captioning_max_length", f"{config.evals.captioning_max_length} exceeds "
              f"model.decoder.context_length {config.model.decoder.context_length}")
    check_contradictions(config)


def _type_error_line(e: TypeError) -> str:
    """ml_collections' "Could not override field 'k' (reference). v is of original type <class
    'str'> and cannot be casted to type <class 'int'>" → "config key 'k' expects int, got str 'v'"."""
    m = re.search(r"field '([^']+)'.*?\. (.*) is of original type <class '(\w+)'> and cannot be "
                  r"casted to type <class '(\w+)'>", str(e), re.S)
    if not m:
        return _first_line(e)
    key, value, got, want = m.groups()
    return f"config key {key!r} expects {want}, got {got} {value!r}"


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_schema(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict | None = None,
                 prefix: str = "") -> None:
    """Every key of `config` exists in `base_config()` and has its type; raises ConfigError.

    Catches what ml_collections lets through: a key that a config file adds by a typo (an
    unlocked ConfigDict accepts it; the error names the nearest valid key), and None or a
    value of another type where the schema holds an int, float, bool, str or list
    (an int is fine for a float; keys whose default is None take any value).
    """
    schema = base_config() if schema is None else schema
    for key in config.keys():
        name = f"{prefix}{key}"
        if key not in schema:
            near = difflib.get_close_matches(key, list(schema.keys()), n=1)
            hint = f"; did you mean {prefix + near[0]!r}?" if near else ""
            raise ConfigError(f"unknown config key {name!r}{hint}")
        want, value = schema[key], config[key]
        if isinstance(want, ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict):
                raise ConfigError(f"config key {name!r} must be a section of keys, got {_type_name(value)}")
            check_schema(value, want, f"{name}.")
            continue
        if want is None:
            continue
        if isinstance(want, bool):
            ok = isinstance(value, bool)
        elif isinstance(want, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(want, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(want, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, type(want))
        if not ok:
            shown = "" if value is None else f" {value!r}"
            raise ConfigError(f"config key {name!r} expects {type(want).__name__}, got {_type_name(value)}{shown}")


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


def load_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`, over the current schema's defaults (`base_config`).

    Raises FileNotFoundError when there is no config.json; a key the schema does not have is a KeyError.
    """
    config = base_config()
    config.update_from_flattened_dict(_flatten(read_config_json(workdir)))
    return config


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}: nested dicts to dotted keys (lists are values)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
