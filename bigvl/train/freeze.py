"""Which params train: `optim.frozen` / `optim.trainable` regexes over param paths, as data.

A param is frozen when its '/'-joined path (e.g. 'image/encoder/block_0/attn/qkv/kernel') fully
matches a regex of `optim.frozen`, or when `optim.trainable` is non-empty and it matches none
of those. LiT locks the image tower: `frozen = ['image/.*', 'image_proj/.*']`; LoRA trains its
adapters alone: `trainable = ['.*/lora_[ab]']`.

Frozen params get no optimizer state, no weight decay and no update (`optax.multi_transform`
with `optax.set_to_zero`, bigvl/train/optimizer.py), and no gradient: the train step splits the
params (`split_trainable`) and differentiates the trainable ones alone, the frozen ones closed
over as constants, so JAX differentiates nothing that depends on them alone.
A locked tower then runs forward only — none of its activations are kept for a backward pass,
and remat inside it recomputes nothing.
"""
from __future__ import annotations

import re

import jax

from bigvl.inference.frozen_store import merge as merge_trainable  # noqa: F401  (inverse of split_trainable)
from bigvl.models import param_path

TRAIN, FROZEN = "train", "frozen"


def _compile(patterns, key: str) -> list[re.Pattern]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"config key 'optim.{key}': {p!r} is not a regex ({e})") from None
    return out


def freezing_enabled(optim_cfg) -> bool:
    """Whether the config freezes anything (configs saved before these keys: no)."""
    return bool(list(optim_cfg.get("frozen", []))) or bool(list(optim_cfg.get("trainable", [])))


def param_labels(params, optim_cfg):
    """A tree like `params` of TRAIN / FROZEN per leaf (arrays, ShapeDtypeStructs or boxed leaves).

    Raises ValueError naming the config key and regex when a regex matches no param (a typo would
    otherwise train or freeze nothing silently), or when nothing is left to train.
    """
    frozen = _compile(optim_cfg.get("frozen", []), "frozen")
    trainable = _compile(optim_cfg.get("trainable", []), "trainable")
    names = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for key, regexes in (("frozen", frozen), ("trainable", trainable)):
        for r in regexes:
            if not any(r.fullmatch(n) for n in names):
                raise ValueError(f"config key 'optim.{key}': {r.pattern!r} matches no param (params look like "
                                 f"{names[0]!r}; a regex must match the whole path)")

    def label(path, _) -> str:
        name = param_path(path)
        if any(r.fullmatch(name) for r in frozen) or (trainable and not any(r.fullmatch(name) for r in trainable)):
            return FROZEN
        return TRAIN

    labels = jax.tree_util.tree_map_with_path(label, params)
    if TRAIN not in jax.tree.leaves(labels):
        raise ValueError("config keys 'optim.frozen' / 'optim.trainable' freeze every param: nothing would train")
    return labels


def split_trainable(params, optim_cfg):
    """(trainable, frozen): two trees like `params`, each with None where the other holds the leaf.

    The train step differentiates `trainable` alone: frozen leaves are constants of the loss, so
    the gradient tree has no frozen leaf (no kernel-sized zeros accumulated over micro-batches).
    Nothing frozen: (params, tree of None).
    """
    if not freezing_enabled(optim_cfg):
        return params, jax.tree.map(lambda _: None, params)
    labels = param_labels(params, optim_cfg)
    pick = lambda want: jax.tree.map(lambda p, lab: p if lab == want else None, params, labels)  # noqa: E731
    return pick(TRAIN), pick(FROZEN)


def count_trainable(params, optim_cfg) -> tuple[int, int]:
    """(trainable scalars, frozen scalars) of `params`."""
    sizes = [int(x.size) for x in jax.tree.leaves(params)]
    if not freezing_enabled(optim_cfg):
        return sum(sizes), 0
    labels = jax.tree.leaves(param_labels(params, optim_cfg))
    train = sum(s for s, lab in zip(sizes, labels) if lab == TRAIN)
    return train, sum(sizes) - train
