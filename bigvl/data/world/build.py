"""Writing a synthetic world to disk: train shards, held-out splits, class names, tokenizer, manifest.

    build_world("/tmp/world", seed=0)   # or ensure_world(...) to reuse a cached build

The manifest stores `GENERATOR_VERSION` and the `WorldParams`; `ensure_world` rebuilds a
cached world when either differs.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bigvl.data.records import encode_example, write_records
from bigvl.data.tokenizer import train_tokenizer
from bigvl.data.world.examples import CLASS_TEMPLATES, class_names, generate_split
from bigvl.data.world.params import WorldParams, world_params
from bigvl.data.world.scene import scene_key

log = logging.getLogger(__name__)

# 2: retrieval records carry extras["regions"] (pointing targets); train shards and tokenizer unchanged.
GENERATOR_VERSION = 2


def captioned_train_mask(params: WorldParams) -> np.ndarray:
    """bool [num_train]: which train records keep their captions (round(caption_fraction ×
    num_train) of them, chosen by the seed on a stream of their own)."""
    count = round(params.caption_fraction * params.num_train)
    order = np.random.default_rng([params.seed, 2 ** 32, 7]).permutation(params.num_train)
    mask = np.zeros(params.num_train, bool)
    mask[order[:count]] = True
    return mask


def _write_records(path: Path, examples: Iterator[dict[str, Any]]) -> int:
    return write_records(path, (encode_example(example) for example in examples))


def _train_shard_names(params: WorldParams) -> list[str]:
    k = params.num_train_shards
    return [f"train-{i:05d}-of-{k:05d}.array_record" for i in range(k)]


def _params_dict(params: WorldParams) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(params)))


def _write_world(directory: Path, params: WorldParams) -> dict[str, Any]:
    """Writes every file of the world into `directory`; returns the manifest (written last)."""
    start = time.time()
    texts: list[str] = []
    train_keys: set = set()

    captioned = captioned_train_mask(params)

    def train_examples():
        for index, (example, scene) in enumerate(generate_split("train", params, params.num_train)):
            texts.append(example["alt_text"])
            texts.extend(example["captions"].values())  # all of them: the same tokenizer at any caption_fraction
            train_keys.add(scene_key(scene, params.image_size))
            yield example if captioned[index] else {**example, "captions": {}}

    stream = train_examples()
    shards = _train_shard_names(params)
    bounds = np.linspace(0, params.num_train, len(shards) + 1).astype(int)
    for name, lo, hi in zip(shards, bounds[:-1], bounds[1:]):
        _write_records(directory / name, (next(stream) for _ in range(hi - lo)))
    avoid = frozenset(train_keys)
    counts = {"train": params.num_train, "train_captioned": int(captioned.sum())}
    for split, count in (("zeroshot", params.num_zeroshot), ("retrieval", params.num_retrieval),
                         ("hard_negatives", params.num_hard_negatives)):
        examples = (example for example, _ in generate_split(split, params, count, avoid))
        counts[split] = _write_records(directory / f"{split}.array_record", examples)
    classes = {"classnames": class_names(), "templates": list(CLASS_TEMPLATES)}
    (directory / "zeroshot_classes.json").write_text(json.dumps(classes, indent=1))
    texts.extend(t.format(name) for name in classes["classnames"] for t in CLASS_TEMPLATES)
    train_tokenizer(texts, directory / "tokenizer", params.vocab_size)
    manifest = {
        "generator_version": GENERATOR_VERSION, "params": _params_dict(params),
        "seed": params.seed, "image_size": params.image_size, "counts": counts,
        "files": {"train": shards, "zeroshot": "zeroshot.array_record",
                  "zeroshot_classes": "zeroshot_classes.json", "retrieval": "retrieval.array_record",
                  "hard_negatives": "hard_negatives.array_record", "tokenizer": "tokenizer.model"},
        "noise": dataclasses.asdict(params.noise),
        "build_seconds": round(time.time() - start, 1),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def build_world(out_dir: str | os.PathLike, seed: int = 0, num_train: int = 20000, **kwargs) -> Path:
    """Generates the world into `out_dir` (replacing an older world there) and returns its path.

    Other keyword arguments: the fields of `WorldParams`. Files: train-XXXXX-of-YYYYY,
    zeroshot, retrieval, hard_negatives (.array_record), zeroshot_classes.json,
    tokenizer.model/.vocab, manifest.json. Built in a temporary sibling directory that
    is renamed into place, so an interrupted build never looks complete.
    """
    params = world_params(seed=seed, num_train=num_train, **kwargs)
    out = Path(out_dir).expanduser().absolute()
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"{out} is a non-empty directory without a synthetic world manifest.json; "
                              "refusing to replace it (choose a new or empty directory)")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    building.chmod(0o755)  # mkdtemp makes it private; the world is shared data
    log.info("building the synthetic world (seed %d, %d train images) in %s", params.seed, params.num_train, out)
    try:
        manifest = _write_world(building, params)
        if out.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, stale / out.name)
            os.replace(building, out)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("built the synthetic world in %s (%.1f s)", out, manifest["build_seconds"])
    return out


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The world's manifest, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out_dir).expanduser() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_world(out_dir: str | os.PathLike, **kwargs) -> Path:
    """Returns `out_dir`, building the world there first unless its manifest already has
    these parameters (keyword arguments as for `build_world`) and all its files exist."""
    params = world_params(**kwargs)
    out = Path(out_dir).expanduser().absolute()
    manifest = read_manifest(out)
    if (manifest is not None and manifest.get("generator_version") == GENERATOR_VERSION
            and manifest.get("params") == _params_dict(params)):
        files = manifest["files"]
        names = list(files["train"]) + [v for k, v in files.items() if k != "train"]
        if all((out / name).is_file() for name in names):
            return out
    return build_world(out, **dataclasses.asdict(params) | {"noise": params.noise})


def ensure_config_world(world_config) -> Path:
    """`ensure_world` for a config's `world` section: its `dir` and every key but `build`
    and `dir` as world parameters (seed, num_train, image_size, and optionally scene,
    noise, caption_fraction, ... as in WorldParams)."""
    cfg = world_config.to_dict() if hasattr(world_config, "to_dict") else dict(world_config)
    return ensure_world(os.path.expanduser(cfg.pop("dir")), **{k: v for k, v in cfg.items() if k != "build"})
