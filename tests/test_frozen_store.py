"""Frozen params stored once (bigvl/inference/frozen_store.py): step checkpoints hold only what trains.

A LiT run (image tower locked) through the real trainer: the frozen leaves are in
WORKDIR/frozen_params and in no step; a run stopped at step 3 and resumed to 6 equals the
uninterrupted run in every param bit; `bigvl.load` gives the same params; a resume that freezes
other params is a ValueError naming the config keys.
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl.models import param_path
from tests.helpers.tiny import tiny_config

LIT = ["image/.*", "image_proj/.*"]


def _config(world, steps, frozen=LIT):
    c = tiny_config(world, total_steps=steps, ckpt_steps=3)
    c.optim.frozen = list(frozen)
    return c


def _flat(tree) -> dict:
    return {param_path(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


@pytest.mark.slow
def test_frozen_params_are_stored_once_and_resume_exactly(tiny_world, tmp_path):
    from bigvl.inference.run import load_run
    from bigvl.train.loop import train_and_evaluate
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train_and_evaluate(_config(tiny_world, 6), straight)
    train_and_evaluate(_config(tiny_world, 3), resumed)
    train_and_evaluate(_config(tiny_world, 6), resumed)  # resumes from step 3

    spec = json.load(open(os.path.join(straight, "frozen_params", "spec.json")))
    assert spec["frozen"] == LIT and spec["leaves"] and all(n.startswith("image") for n in spec["leaves"])
    step_tree = ocp.StandardCheckpointer().metadata(os.path.join(straight, "checkpoints", "6", "state"))
    step_tree = getattr(step_tree, "item_metadata", step_tree)
    stored = {param_path(p) for p, v in jax.tree_util.tree_flatten_with_path(step_tree["params"])[0]
              if v is not None}
    assert stored and not stored & set(spec["leaves"])  # no frozen leaf in a step
    assert stored | set(spec["leaves"]) == set(_flat(load_run(straight).params))
    assert _bytes(os.path.join(straight, "frozen_params", "params")) > 0

    a, b = _flat(load_run(straight).params), _flat(load_run(resumed).params)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    losses = [[json.loads(line)["loss"] for line in open(os.path.join(w, "metrics.jsonl")) if '"loss"' in line]
              for w in (straight, resumed)]
    assert losses[0][-3:] == losses[1][-3:]

    with pytest.raises(ValueError, match=r"optim.frozen.*optim.trainable"):
        train_and_evaluate(_config(tiny_world, 9, frozen=["image/.*"]), resumed)  # image_proj no longer frozen
