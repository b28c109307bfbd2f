"""SigLIP 2's EMA teacher (bigvl/train/teacher.py): the EMA against a hand-worked case, the stage's gate in real
train steps (terms 0 and teacher = the student before the start step, both terms on after, one compile), and
(slow tier) a run killed with SIGKILL and relaunched across the start step restoring the teacher bitwise."""
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from benchmarks.train_step import random_batch
from bigvl.config import base_config
from bigvl.parallel.mesh import DEFAULT_RULES, batch_sharding, host_local_to_global, make_mesh
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step
from bigvl.train.teacher import TeacherStage, start_step
from tests.helpers.tiny import set_keys, tiny_config, tiny_towers
from tests.helpers.xla_env import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE = {"loss.name": "sigmoid", "model.bias_init": -10.0, "model.temperature_init": 10.0,
         "loss.self_distill.weight": 1.0, "loss.masked_prediction.weight": 0.25,
         "loss.self_distill.num_prototypes": 32, "loss.self_distill.hidden_dim": 32,
         "loss.self_distill.bottleneck_dim": 8, "loss.self_distill.local_crops": 2}


def test_ema_update_hand_worked():
    stage = TeacherStage(start=0, momentum=0.75, mask_ratio=0.5, seed=0)
    teacher, params = {"a": np.array([1.0, 2.0], np.float32)}, {"a": np.array([3.0, 6.0], np.float32)}
    np.testing.assert_allclose(np.asarray(stage.next_teacher(teacher, params, True)["a"]), [1.5, 3.0])  # .75·t + .25·p
    assert stage.next_teacher(teacher, params, False) is params  # before the stage: the student itself
    assert start_step(set_keys(base_config(), {"loss.self_distill.start_fraction": 0.8}).loss, 1200) == 960


def test_the_stage_is_off_before_its_start_and_the_teacher_starts_as_the_student():
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=4, depth=1, vocab_size=64, context_length=8)
    c.model.embed_dim, c.model.image.pool = 16, "map"
    c.batch_size, c.total_steps, c.optim.warmup_steps, c.optim.lr = 8, 5, 0, 1e-2
    set_keys(c, {**STAGE, "loss.self_distill.local_size": 8, "loss.self_distill.start_fraction": 0.6})  # start: step 3
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    setup = make_train_setup(c, mesh, DEFAULT_RULES)
    state = setup.compiled_init(jax.random.key(0))
    traced = []
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        def counted(s, b):
            traced.append(1)
            return make_train_step(c, setup)(s, b)
        step = jax.jit(counted, in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                       out_shardings=(setup.state_shardings, None))
        for i in range(5):
            same = [np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state["params"]),
                                                          jax.tree.leaves(state["teacher"]), strict=True)]
            before = jax.tree.map(np.asarray, state)
            state, m = step(state, host_local_to_global(random_batch(c, 1, seed=i), mesh))
            on = i >= 3
            assert all(same) if i <= 3 else not all(same), i  # teacher = student up to and at the start
            for name in ("self_distill_loss", "masked_prediction_loss"):
                assert (float(m[name]) > 0) == on, (i, name)
            assert (float(m["loss"]) > float(m["contrastive_loss"])) == on
            centers_moved = not np.array_equal(before["loss_state"]["center"], np.asarray(state["loss_state"]["center"]))
            assert centers_moved == on
    assert len(traced) == 1  # one program: the stage is data (lax.cond), not a second compile


_KILLED = """
import os, signal, time, pathlib
import jax
jax.config.update("jax_num_cpu_devices", 8)
from bigvl.train import metrics_log as metrics_writer
from bigvl.train.loop import train_and_evaluate
from tests.helpers.tiny import tiny_config

write = metrics_writer.MetricsWriter.write
def write_then_die(self, step, metrics, console=True):
    write(self, step, metrics, console)
    if step == 5:  # once checkpoint 3 is committed, die at once (before the stage's start, step 4)
        deadline = time.time() + 60
        while not os.path.isdir(os.path.join({workdir!r}, "checkpoints", "3")) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
metrics_writer.MetricsWriter.write = write_then_die
train_and_evaluate(tiny_config(pathlib.Path({world!r}), **{overrides!r}), {workdir!r})
"""


@pytest.mark.slow
def test_kill_9_across_the_start_restores_the_teacher_bitwise(tiny_world, tmp_path):
    from bigvl.train.loop import train_and_evaluate
    overrides = {**STAGE, "total_steps": 8, "loss.self_distill.start_fraction": 0.5, "loss.self_distill.local_size": 16,
                 "data.caption_strategy": "recap"}
    straight = str(tmp_path / "straight")
    train_and_evaluate(tiny_config(tiny_world, **overrides), straight)
    workdir = str(tmp_path / "run")
    killed = subprocess.run([sys.executable, "-c", _KILLED.format(world=str(tiny_world), workdir=workdir,
                                                                  overrides=overrides)],
                            cwd=ROOT, env=subprocess_env(8), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    train_and_evaluate(tiny_config(tiny_world, **overrides), workdir)  # the relaunch, from checkpoint 3

    def state(w):
        return ocp.StandardCheckpointer().restore(os.path.join(w, "checkpoints", "8", "state"))
    a, b = state(straight), state(workdir)
    assert "teacher" in a and "self_distill" in a["params"]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # teacher, centers, params, moments: bitwise
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
                   zip(jax.tree.leaves(a["teacher"]), jax.tree.leaves(a["params"])))  # the EMA ran (steps 4–8)
