"""Elastic resume: a checkpoint resumes on another mesh or process count with the same global batch.

The reference is the uninterrupted single-process run on 8 devices (`tiny_run`): after the
resume, every step consumes the same record ids (workdir/example_ids/) and the params end
equal within the tolerance of another reduction order. A changed global batch is one error.
"""
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl.config import load_config_json
from bigvl.data.iterator_state import state_at_step
from bigvl.data.pipeline import make_train_dataset
from bigvl.inference.run import load_run
from bigvl.train import checkpoints
from bigvl.train.example_ids import ids_path, read_ids
from tests.helpers.multihost_launch import launch, tiny_config_file


@pytest.mark.parametrize("workers,host,hosts", [(0, 0, 1), (0, 1, 2), (2, 1, 2)])
def test_state_at_step_is_where_the_iterator_stands(tiny_world, workers, host, hosts):
    from tests.helpers.tiny import tiny_config
    config = tiny_config(tiny_world)
    config.data.num_workers = workers
    local = config.batch_size // hosts
    it = iter(make_train_dataset(config, host, hosts))
    fresh = it.get_state()
    for step in range(1, 4):
        next(it)
        assert it.get_state() == state_at_step(fresh, step, local), (workers, step)
    with pytest.raises(ValueError, match="layout"):
        state_at_step({"some_other": 1}, 3, local)


def _copy_run(tiny_run, tmp_path, keep_step):
    """tiny_run's workdir with checkpoints after `keep_step` removed (a run stopped there)."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    for step in os.listdir(workdir / "checkpoints"):
        if step.isdigit() and int(step) > keep_step:
            shutil.rmtree(workdir / "checkpoints" / step)
    (workdir / "final_metrics.json").unlink(missing_ok=True)
    return workdir


def _restore(workdir, batch_size):
    meta = ocp.StandardCheckpointer().metadata(os.path.join(workdir, "checkpoints", "3", "state"))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta.item_metadata)
    data_iter = iter(make_train_dataset(load_config_json(str(workdir)), 0, 1))
    manager = checkpoints.make_manager(str(workdir), keep=2)
    return checkpoints.restore_latest(manager, abstract, data_iter, batch_size), data_iter


def test_a_changed_global_batch_is_one_clear_error(tiny_run, tmp_path):
    workdir = _copy_run(tiny_run, tmp_path, keep_step=3)
    with pytest.raises(checkpoints.CheckpointLayoutError, match="batch_size 16; this run has batch_size 32"):
        _restore(workdir, 32)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3"]  # not moved aside as corrupt


def test_iterator_states_of_another_process_count_are_replaced_by_the_step(tiny_run, tmp_path):
    workdir = _copy_run(tiny_run, tmp_path, keep_step=3)
    data = workdir / "checkpoints" / "3" / "data"
    os.rename(data / "process_0-of-1.json", data / "process_0-of-2.json")  # as if 2 processes wrote it
    (data / "process_1-of-2.json").write_text((data / "process_0-of-2.json").read_text())
    state, data_iter = _restore(workdir, 16)
    assert int(state["step"]) == 3
    want = dict(read_ids(ids_path(str(tiny_run), 0, 1)))[4]  # what the uninterrupted run read at step 4
    assert next(data_iter)["index"].tolist() == want


def _assert_continues_like(tiny_run, workdir):
    """Steps 4-6 of the resumed single-process run read tiny_run's ids; the params end equal."""
    reference = dict(read_ids(ids_path(str(tiny_run), 0, 1)))
    resumed = read_ids(ids_path(str(workdir), 0, 1))
    assert [s for s, _ in resumed if s > 3] == [4, 5, 6]
    for step, ids in resumed:
        if step > 3:
            assert ids == reference[step], step
    single, elastic = load_run(str(tiny_run)), load_run(str(workdir))
    assert elastic.step == single.step == 6
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(elastic.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_eight_devices_resume_on_four(tiny_world, tiny_run, tmp_path):
    workdir = _copy_run(tiny_run, tmp_path, keep_step=3)  # written on 8 devices, stopped at step 3
    [(code, out)] = launch(1, 4, workdir, tiny_config_file(tmp_path, tiny_world))
    assert code == 0, out[-3000:]
    assert "restored checkpoint at step 3" in out and "4 global" in out
    _assert_continues_like(tiny_run, workdir)


@pytest.mark.slow
def test_two_processes_resume_as_one(tiny_world, tiny_run, tmp_path):
    config, workdir = tiny_config_file(tmp_path, tiny_world), tmp_path / "elastic"
    results = launch(2, 2, workdir, config, "--config.total_steps=3")  # 2 processes stop after step 3
    assert all(code == 0 for code, _ in results), results[0][1][-3000:]
    [(code, out)] = launch(1, 4, workdir, config)  # one process takes over
    assert code == 0, out[-3000:]
    assert "written by another process count" in out
    _assert_continues_like(tiny_run, workdir)
    [(code, out)] = launch(1, 4, tmp_path / "elastic", config, "--config.batch_size=32",
                            "--config.total_steps=8")
    assert code == 2 and "resuming needs the same global batch" in out.lower(), out[-2000:]
