"""Frozen params stored once per run: `WORKDIR/frozen_params/`, beside the step checkpoints.

A run that freezes params (`optim.frozen` / `optim.trainable`: LiT's locked tower, LoRA's base
kernels) never changes them, so its step checkpoints hold None in their place and the frozen
leaves are written once, before the first step checkpoint:

    WORKDIR/frozen_params/params/   an orbax checkpoint of the params tree, None where a leaf trains
    WORKDIR/frozen_params/spec.json {"frozen": [...], "trainable": [...], "leaves": [frozen leaf paths]}

`spec.json` is written after the params are complete, so its presence means the store is whole.
A resumed run whose freeze regexes select other leaves gets a ValueError naming the config keys.
`bigvl/train/loop.py` writes the store; `restore_params` (bigvl/inference/run.py) and the
trainer's resume read it back and merge.
"""
from __future__ import annotations

import json
from typing import Any

import jax
import orbax.checkpoint as ocp

from bigvl.models import param_path
from bigvl.parallel.storage import run_path, write_text

STORE = "frozen_params"


def frozen_leaves(params_with_none) -> list[str]:
    """The '/'-joined paths of the leaves that are not None in a params-shaped tree."""
    flat = jax.tree_util.tree_flatten_with_path(params_with_none, is_leaf=lambda x: x is None)[0]
    return [param_path(p) for p, leaf in flat if leaf is not None]


def read_spec(workdir: str) -> dict | None:
    """The store's spec.json, or None when the run has no (complete) frozen store."""
    path = run_path(workdir) / STORE / "spec.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_frozen(workdir: str, frozen, optim_cfg) -> None:
    """Writes the frozen leaves (`frozen`: params tree, None where a leaf trains) and then spec.json.

    The caller decides once, before its first step checkpoint, that the run has no complete store
    (`read_spec` is None) and every process calls this then (orbax saves collectively). A store
    left half-written by a killed run (params but no spec.json) is removed first.
    """
    from jax.experimental import multihost_utils
    store = run_path(workdir) / STORE
    target = store / "params"
    if jax.process_index() == 0 and target.exists():  # orbax will not write over it
        target.rmtree()
    multihost_utils.sync_global_devices("bigvl_frozen_store")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, frozen)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        spec = {"frozen": list(optim_cfg.get("frozen", [])), "trainable": list(optim_cfg.get("trainable", [])),
                "leaves": frozen_leaves(frozen)}
        write_text(store / "spec.json", json.dumps(spec, indent=1))


def check_same_leaves(spec: dict, leaves: list[str], workdir: str) -> None:
    """ValueError naming the config keys when this run freezes other leaves than the stored ones."""
    if spec["leaves"] != leaves:
        gone = sorted(set(spec["leaves"]) - set(leaves))[:3]
        new = sorted(set(leaves) - set(spec["leaves"]))[:3]
        raise ValueError(
            f"config keys 'optim.frozen' / 'optim.trainable': {workdir} was trained with frozen = "
            f"{spec['frozen']}, trainable = {spec['trainable']} ({len(spec['leaves'])} frozen params); this run "
            f"freezes {len(leaves)} params (no longer frozen: {gone}; newly frozen: {new}). Its step checkpoints "
            "hold only the params that trained: resume with the run's own freeze settings, or start a new "
            "workdir with --config.init.workdir pointing at it")


def split_by_spec(tree, spec: dict) -> tuple[Any, Any]:
    """(stepped, frozen): two trees like the params tree `tree`, None where the other holds the leaf,
    frozen = the leaves named in spec["leaves"]."""
    names = set(spec["leaves"])
    pick = lambda want: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda p, x: x if (param_path(p) in names) == want else None, tree)
    return pick(False), pick(True)


def restore_frozen(workdir: str, abstract_frozen) -> Any:
    """The stored frozen leaves onto the shardings of `abstract_frozen` (ShapeDtypeStructs, None elsewhere)."""
    return ocp.StandardCheckpointer().restore(run_path(workdir) / STORE / "params", abstract_frozen)


def merge(stepped, frozen):
    """One params tree from a step checkpoint's leaves and the store's (each None where the other holds it)."""
    return jax.tree.map(lambda s, f: f if s is None else s, stepped, frozen, is_leaf=lambda x: x is None)
