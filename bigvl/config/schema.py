"""The config schema: `base_config()` holds every key bigvl reads, with its default.

Every experiment config starts from it and changes values. `check_schema` catches what
ml_collections lets through (a key a config file adds by a typo, a value of another type),
naming the nearest valid key.
"""
from __future__ import annotations

import difflib
from typing import Any

import ml_collections

from bigvl.config.errors import ConfigError
from bigvl.data.caption_strategies import strategy_config_defaults
from bigvl.evaluators.common import EVALUATORS, GLOBAL_KEYS, default_entries, entry_options, entry_schema
from bigvl.losses.config_defaults import loss_config_defaults
from bigvl.models import model_config_defaults
from bigvl.parallel.mesh import DEFAULT_RULES


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
    # Weighted mixture instead of train_paths: [dict(name=, paths=[...], weight=, <caption strategy keys>), ...]
    # (bigvl/data/mixture.py); [] = read data.train_paths
    c.data.sources = []
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
    # FlexCap-style length control: the target prefixed with its word count ("7 words: ...",
    # bigvl/data/length_prefix.py); decode with bigvl.caption(run, images, length=N).
    c.data.target_length_prefix = False
    c.data.min_crop_scale = 0.8  # random resized crop area range [min, 1]
    c.data.num_workers = 0  # grain multiprocessing workers (0 = in process)
    c.data.prefetch_buffer = 2
    # NaFlex length buckets (bigvl/data/naflex_buckets.py; needs model.image.naflex): each step trains at one
    # patch budget L of `lengths` ([] = square images), with a global batch of tokens_per_step // L (0 = batch_size
    # x (image_size / patch)^2, the square recipe's tokens) rounded down to a multiple of batch_multiple
    # (0 = the devices x optim.grad_accum_steps); the order is a seeded cycle over the lengths, fixed by the step.
    c.data.naflex = ml_collections.ConfigDict(dict(lengths=[], tokens_per_step=0, batch_multiple=0))

    c.model = model_config_defaults()

    c.loss = loss_config_defaults()  # every key documented in bigvl/losses/config_defaults.py

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
    # Fine-tuning (bigvl/train/freeze.py): params whose path fully matches a `frozen` regex, or matches
    # no `trainable` regex when that list is non-empty, get no gradient, no optimizer state and no
    # update. LiT: frozen = ['image/.*', 'image_proj/.*']; LoRA: trainable = ['.*/lora_[ab]'].
    c.optim.frozen = []
    c.optim.trainable = []
    c.optim.layer_decay = 0.0  # layer-wise LR decay of the towers (BEiT), e.g. 0.75; 0 = off

    # Start a fresh run from another run's params (fine-tuning). A text positional table
    # shorter than model.text.context_length is stretched Long-CLIP style (long_context.py),
    # keeping its first `stretch_keep` rows.
    c.init = ml_collections.ConfigDict()
    c.init.workdir = ""  # a bigvl workdir; its latest checkpoint's params
    c.init.stretch_keep = 20

    # Evaluators: `evals.NAME = dict(type=TYPE, **options)`, any NAME; the types and their options are
    # bigvl.evaluators.EVALUATORS (zeroshot: split, classes; retrieval: split, field; hard_negatives: split;
    # pointing: split; captioning: split, field, max_length, method, beam_size). One entry per type is
    # here, named as the type and off (split ""); metrics are NAME/metric.
    c.evals = ml_collections.ConfigDict()
    c.evals.batch_size = 256
    # Published benchmarks (bigvl.evaluators.suites.SUITES), e.g. "wds/imagenet1k,karpathy/coco"; "" = off
    c.evals.suites = ""
    c.evals.data_dir = ""
    c.evals.update(default_entries())
    return c


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
            if name == "evals":
                check_evals(value)
            else:
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


def check_evals(evals: ml_collections.ConfigDict) -> None:
    """`config.evals`: its global keys, and each entry against its type's options (ConfigError naming the key).

    An entry is a section with a `type` of bigvl.evaluators.EVALUATORS (an unknown one names the
    nearest); its keys are that type's options, typed by their defaults.
    """
    base = base_config().evals
    for key in evals.keys():
        name, value = f"evals.{key}", evals[key]
        if key in GLOBAL_KEYS:
            check_schema(ml_collections.ConfigDict({key: value}), base, "evals.")
            continue
        if not isinstance(value, ml_collections.ConfigDict):
            raise ConfigError(f"config key {name!r} must be an evaluator entry dict(type=..., ...), "
                              f"got {_type_name(value)}; evals keys besides entries are {list(GLOBAL_KEYS)}")
        kind = value.get("type")
        if kind not in EVALUATORS:
            near = difflib.get_close_matches(str(kind), list(EVALUATORS), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; the types are {sorted(EVALUATORS)}"
            raise ConfigError(f"config key {name + '.type'!r}: unknown evaluator type {kind!r}{hint}")
        check_schema(value, entry_schema(kind), f"{name}.")


def complete_evals(config: ml_collections.ConfigDict) -> None:
    """Fills each `evals` entry of a known type with its type's defaults for the options it leaves out,
    in place (so `--config.evals.NAME.option=value` finds every option). Unknown types are left to
    `check_evals`."""
    for key in list(config.evals.keys()):
        entry = config.evals[key]
        if isinstance(entry, ml_collections.ConfigDict) and entry.get("type") in EVALUATORS:
            missing = {k: v for k, v in entry_options(entry).items() if k not in entry}
            if missing:
                with entry.unlocked():
                    entry.update(missing)
