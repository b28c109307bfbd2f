"""NaFlex training end to end (bigvl/data/naflex_buckets.py, the trainer): three bucket lengths, the
step compiled once per length (not per batch), and resume bitwise equal to the uninterrupted run."""
import jax
import numpy as np
import pytest

from bigvl.inference.run import load_run
from bigvl.train.loop import train_and_evaluate
from bigvl.train.metrics_log import read_metrics
from tests.helpers.tiny import tiny_config

pytestmark = pytest.mark.slow  # two short trainings with three compiles each (a minute or more on the shared box)


def naflex_config(world, **overrides):
    """The tiny CLIP (32 px, patch 8: a 4 x 4 position grid) over buckets of 4, 8 and 16 patches."""
    c = tiny_config(world, **overrides)
    c.model.image.naflex = True
    c.model.image.pool = "gap"
    c.data.naflex.lengths = [4, 8, 16]  # tokens per step: 16 x 16 = 256 -> batches 64, 32, 16
    return c


def test_one_compile_per_length_and_exact_resume(tiny_world, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_and_evaluate(naflex_config(tiny_world), str(straight))
    rows = [r for r in read_metrics(str(straight)) if "loss" in r]
    assert [r["step_compiles"] for r in rows] == [1, 2, 3, 3, 3, 3]  # one per length, none after
    train_and_evaluate(naflex_config(tiny_world, total_steps=3), str(resumed))  # "killed" after step 3
    train_and_evaluate(naflex_config(tiny_world), str(resumed))  # relaunch: resumes to 6
    a, b = (jax.tree.map(np.asarray, load_run(str(w)).params) for w in (straight, resumed))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert {r["step"]: r["loss"] for r in rows} == {
        r["step"]: r["loss"] for r in read_metrics(str(resumed)) if "loss" in r}
