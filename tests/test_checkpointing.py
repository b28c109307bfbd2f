"""Resume picks the newest checkpoint that restores; SIGTERM saves and exits cleanly."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl.config import load_config_json
from bigvl.data.pipeline import make_train_dataset
from bigvl.train import checkpoints as checkpointing
from tests.helpers.tiny import tiny_config
from tests.helpers.xla_env import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _largest_file(directory):
    files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
    return max(files, key=os.path.getsize)


def _truncate_state(step_dir):
    with open(_largest_file(os.path.join(step_dir, "state")), "r+b") as f:
        f.truncate(100)


def _delete_iterator_state(step_dir):
    os.remove(os.path.join(step_dir, "data", "process_0-of-1.json"))


def _half_written_iterator_state(step_dir):
    with open(os.path.join(step_dir, "data", "process_0-of-1.json"), "w") as f:
        f.write('{"next_')


def _garbage_step_metadata(step_dir):
    with open(os.path.join(step_dir, "_CHECKPOINT_METADATA"), "w") as f:
        f.write("garbage{{")


def _saved_state(workdir, step):
    """What `step` saved, read straight from its directory (no manager, no target)."""
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def _restore(workdir):
    """restore_latest onto single-device targets shaped like the saved state, and the iterator."""
    meta = ocp.StandardCheckpointer().metadata(os.path.join(workdir, "checkpoints", "3", "state"))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            meta.item_metadata)
    data_iter = iter(make_train_dataset(load_config_json(str(workdir)), 0, 1))
    manager = checkpointing.make_manager(str(workdir), keep=2)
    return checkpointing.restore_latest(manager, abstract, data_iter), data_iter, manager


def _batch_indices_after(workdir, steps):
    """The example indices of batch `steps + 1` of a fresh iterator: the naive position reference."""
    data_iter = iter(make_train_dataset(load_config_json(str(workdir)), 0, 1))
    for _ in range(steps):
        next(data_iter)
    return next(data_iter)["index"]


@pytest.mark.parametrize("corrupt,restored_step", [
    (_truncate_state, 3), (_delete_iterator_state, 3), (_half_written_iterator_state, 3),
    (_garbage_step_metadata, 6),  # orbax does not need this file to restore: step 6 is intact
])
def test_unrestorable_latest_step_falls_back_to_the_previous_one(tiny_run, tmp_path, caplog, corrupt,
                                                                 restored_step):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    corrupt(str(workdir / "checkpoints" / "6"))
    state, data_iter, manager = _restore(workdir)
    assert int(state["step"]) == restored_step
    expected = _saved_state(tiny_run, restored_step)  # from the intact original run
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(next(data_iter)["index"], _batch_indices_after(tiny_run, restored_step))
    if restored_step == 3:
        assert any(str(workdir / "checkpoints" / "6") in r.message and "does not restore" in r.message
                   for r in caplog.records if r.levelname == "WARNING")
        assert manager.all_steps() == [3] and (workdir / "checkpoints" / "6.corrupt").is_dir()


def test_orbax_tmp_dirs_are_not_checkpoints(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    half = workdir / "checkpoints" / "9.orbax-checkpoint-tmp-1234"  # an interrupted save
    shutil.copytree(workdir / "checkpoints" / "6", half)
    _truncate_state(str(half))
    state, _, manager = _restore(workdir)
    assert int(state["step"]) == 6 and manager.all_steps() == [3, 6]


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    _truncate_state(str(workdir / "checkpoints" / "6"))
    _delete_iterator_state(str(workdir / "checkpoints" / "3"))
    with pytest.raises(RuntimeError, match=r"step 6: .*; step 3: .*process_0-of-1.json"):
        _restore(workdir)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "6"]  # left for a human to look at


def test_training_resumes_past_a_corrupt_step(tiny_world, tiny_run, tmp_path, caplog):
    """Fall back to step 3, retrain 4-6, save step 6 again: the same params as the straight run."""
    from bigvl.inference.run import load_run
    from bigvl.train.loop import train_and_evaluate
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    _truncate_state(str(workdir / "checkpoints" / "6"))
    caplog.set_level("INFO")
    train_and_evaluate(tiny_config(tiny_world), str(workdir))
    assert "restored checkpoint at step 3" in caplog.text
    straight, resumed = load_run(str(tiny_run)), load_run(str(workdir))
    assert resumed.step == 6
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _NoSyncManager:
    def reached_preemption(self, step):
        return False


def test_preemption_watcher_flags_sigterm_and_restores_the_handler():
    previous = signal.getsignal(signal.SIGTERM)
    with checkpointing.PreemptionWatcher() as watcher:
        assert not watcher.reached(_NoSyncManager(), 1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert watcher.reached(_NoSyncManager(), 2)
    assert signal.getsignal(signal.SIGTERM) == previous


_TRAIN = """
import jax
jax.config.update("jax_num_cpu_devices", 8)
import logging, pathlib
logging.basicConfig(level=logging.INFO)
from tests.helpers.tiny import tiny_config
from bigvl.train.loop import train_and_evaluate
train_and_evaluate(tiny_config(pathlib.Path({world!r}), total_steps=200, ckpt_steps=1000), {workdir!r})
"""


def _logged_steps(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.strip().endswith("}")]


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_exits_0(tiny_world, tmp_path, caplog):
    from bigvl.train.loop import train_and_evaluate
    workdir = str(tmp_path / "run")
    script = _TRAIN.format(world=str(tiny_world), workdir=workdir)
    env = subprocess_env(8)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(_logged_steps(workdir)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    saved = [int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()]
    stopped = max(_logged_steps(workdir))
    assert saved == [stopped] and 3 <= stopped < 200, (saved, stopped)
    assert f"preempted: saved step {stopped}" in output

    caplog.set_level("INFO")
    config = tiny_config(tiny_world, total_steps=stopped + 2, ckpt_steps=1000)
    train_and_evaluate(config, workdir)
    assert f"restored checkpoint at step {stopped}" in caplog.text
    assert max(_logged_steps(workdir)) == stopped + 2


@pytest.mark.slow
def test_a_finished_run_relaunched_reports_and_a_killed_final_evaluation_is_redone_once(tiny_world, tmp_path):
    """Killed after its final checkpoint, during or after the final evaluation: the relaunch evaluates
    once more and metrics.jsonl keeps one evaluation row for the last step (the old one moves to
    metrics.superseded.jsonl); relaunched once finished, it returns the results and writes nothing."""
    from bigvl.train.loop import train_and_evaluate
    config = tiny_config(tiny_world, total_steps=2, ckpt_steps=2)
    config.evals.retrieval.split = str(tiny_world / "retrieval.array_record")
    workdir = tmp_path / "run"
    first = train_and_evaluate(config, str(workdir))
    metrics_path = workdir / "metrics.jsonl"

    def eval_rows():
        return [json.loads(line) for line in metrics_path.read_text().splitlines() if "eval_time_s" in line]

    before = metrics_path.read_text()
    assert len(eval_rows()) == 1 and eval_rows()[0]["step"] == 2
    assert train_and_evaluate(config, str(workdir)) == first  # finished: reported, not recomputed
    assert metrics_path.read_text() == before

    os.remove(workdir / "final_metrics.json")  # as if killed right after writing the final eval row
    again = train_and_evaluate(config, str(workdir))
    assert again == pytest.approx(first)
    assert len(eval_rows()) == 1
    superseded = (workdir / "metrics.superseded.jsonl").read_text().splitlines()
    assert len(superseded) == 1 and json.loads(superseded[0])["step"] == 2 and "eval_time_s" in superseded[0]
    train_rows = [line for line in metrics_path.read_text().splitlines() if "eval_time_s" not in line]
    assert [json.loads(line)["step"] for line in train_rows] == [1, 2]
