"""Checkpoints survive refactors: a step written by bigvl before the package-per-stage layout
(tests/fixtures/checkpoint_v0, format version 0) restores and trains on as the run that wrote it
did, to float rounding; new steps carry a format version, and an unknown version fails in one line."""
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl.inference.checkpoint_format import FORMAT_VERSION, CheckpointVersionError, format_version
from bigvl.train import checkpoints
from bigvl.train.loop import train_and_evaluate
from bigvl.train.metrics_log import read_metrics
from tests.helpers.tiny import tiny_config

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoint_v0")


def _params_at(workdir, step):
    state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state["params"])[0]}


@pytest.fixture(scope="module")
def resumed_v0(tiny_world, tmp_path_factory):
    """The v0 fixture's step 3 resumed to step 6 by today's trainer."""
    workdir = tmp_path_factory.mktemp("resume_v0")
    shutil.copytree(os.path.join(FIXTURE, "3"), workdir / "checkpoints" / "3")
    assert format_version(workdir / "checkpoints" / "3") == 0
    config = tiny_config(tiny_world)
    # The fixture's run computed every position of the towers' last blocks (before
    # model.pooled_last_block): the same arithmetic, for a bitwise comparison.
    config.model.pooled_last_block = False
    train_and_evaluate(config, str(workdir))
    return workdir


def test_v0_checkpoint_trains_on_as_the_run_that_wrote_it(resumed_v0):
    """Within float rounding, not bitwise: XLA:CPU compiles for the host's instruction set, so a
    CPU other than the fixture writer's sums in another order. Measured on a machine whose three
    steps differed: params by at most 6.4e-5 of their array's largest entry (qkv biases, whose
    Adam updates divide near-zero gradients), losses by 1.5e-7 relative. A learning rate 1 % off
    moves the params by up to 4.7e-2 of their entries and fails this test. Bitwise resume on one
    machine is test_train's resume test."""
    want = dict(np.load(os.path.join(FIXTURE, "params_step6.npz")))
    got = _params_at(resumed_v0, 6)
    assert sorted(got) == sorted(want)
    for name in want:
        scale = float(np.abs(want[name]).max())
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-3 * scale, err_msg=name)
    with open(os.path.join(FIXTURE, "README.json")) as f:
        losses = json.load(f)["losses_after"]
    rows = {row["step"]: row for row in read_metrics(str(resumed_v0)) if "loss" in row}
    assert sorted(rows) == [4, 5, 6]
    for step, loss in losses.items():
        assert rows[int(step)]["loss"] == pytest.approx(loss, rel=1e-5), step


def test_new_steps_record_their_format_version(resumed_v0):
    assert format_version(resumed_v0 / "checkpoints" / "6") == FORMAT_VERSION


def test_unknown_format_version_fails_in_one_line_and_is_left_in_place(resumed_v0, tmp_path):
    workdir = tmp_path / "future"
    shutil.copytree(resumed_v0 / "checkpoints" / "6", workdir / "checkpoints" / "6")
    with open(workdir / "checkpoints" / "6" / "meta" / "metadata", "w") as f:
        json.dump({"format_version": 99}, f)
    manager = checkpoints.make_manager(str(workdir), keep=2)
    with pytest.raises(CheckpointVersionError) as error:
        checkpoints.restore_latest(manager, None, None)
    message = str(error.value)
    assert "\n" not in message and "format version 99" in message and "0, 1" in message
    assert os.path.isdir(workdir / "checkpoints" / "6")  # not moved aside as corrupt
