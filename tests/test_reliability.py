"""kill -9 mid-run, relaunch: the same params (bitwise), logs and consumed examples as a straight run."""
import json
import os
import subprocess
import sys

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl.data.records import read_records
from bigvl.train.example_ids import ids_path
from bigvl.train.metrics_log import read_metrics
from bigvl.train.supersede import supersede_after, superseded_path
from tests.helpers.data_faults import truncate_shard, write_faulty_shard
from tests.helpers.tiny import tiny_config
from tests.helpers.xla_env import subprocess_env

pytestmark = pytest.mark.slow  # second tier: end-to-end (README, .ci/run)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = {"time", "step_time_s", "pairs_per_s", "model_tflops_per_s", "mfu", "eval_time_s"}
STEPS, KILL_AT = 8, 5  # checkpoints at 3, 6, 8; killed after step 5, so resumed from 3

_KILLED = """
import os, signal, sys, time, pathlib
import jax
jax.config.update("jax_num_cpu_devices", 8)
from bigvl.train import metrics_log as metrics_writer
from bigvl.train.loop import train_and_evaluate
from tests.helpers.tiny import tiny_config

write = metrics_writer.MetricsWriter.write
def write_then_die(self, step, metrics, console=True):
    write(self, step, metrics, console)
    if step == {kill_at}:  # once checkpoint 3 is committed (renamed into place), die at once
        deadline = time.time() + 60
        while not os.path.isdir(os.path.join({workdir!r}, "checkpoints", "3")) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
metrics_writer.MetricsWriter.write = write_then_die
train_and_evaluate(tiny_config(pathlib.Path({world!r}), **{overrides!r}), {workdir!r})
"""


@pytest.fixture(scope="module")
def faulty_world_overrides(tiny_world, tmp_path_factory):
    """Training data with every record fault kind, a truncated shard and a clean shard."""
    root = tmp_path_factory.mktemp("faulty_train")
    good = read_records(str(tiny_world / "train-00000-of-00002.array_record"))[:40]
    faulty = str(root / "faulty.array_record")
    bad = set(write_faulty_shard(good, faulty).values())
    truncated = str(root / "truncated.array_record")
    truncate_shard(str(tiny_world / "train-00000-of-00002.array_record"), truncated)
    clean = str(tiny_world / "train-00001-of-00002.array_record")
    overrides = {"total_steps": STEPS, "data.train_paths": [faulty, truncated, clean],
                 "data.caption_strategy": "recap"}
    return overrides, bad, 48 + 96


@pytest.fixture(scope="module")
def straight_run(tiny_world, faulty_world_overrides, tmp_path_factory):
    from bigvl.train.loop import train_and_evaluate
    workdir = str(tmp_path_factory.mktemp("straight"))
    train_and_evaluate(tiny_config(tiny_world, **faulty_world_overrides[0]), workdir)
    return workdir


def _state(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))


def _rows(workdir):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(workdir)]


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_straight_run_counts_faulty_records_and_unreadable_shards(straight_run, faulty_world_overrides):
    _, bad, num_records = faulty_world_overrides
    rows = [r for r in read_metrics(straight_run) if "data_skipped" in r]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    # independent count: positions of the shuffled stream (grain over plain indices) holding a bad record
    order = grain.MapDataset.range(num_records).seed(0).shuffle().repeat()
    per_step = [sum(order[p] in bad for p in range(s * 16, (s + 1) * 16)) for s in range(STEPS)]
    assert [r["data_skipped"] for r in rows] == np.cumsum(per_step).tolist()
    assert rows[-1]["data_skipped"] > 0 and all(r["data_unreadable_shards"] == 1 for r in rows)


def test_kill_9_then_relaunch_equals_the_straight_run(tiny_world, straight_run, faulty_world_overrides,
                                                      tmp_path):
    from bigvl.train.loop import train_and_evaluate
    overrides = faulty_world_overrides[0]
    workdir = str(tmp_path / "run")
    script = _KILLED.format(world=str(tiny_world), workdir=workdir,
                            overrides=overrides, kill_at=KILL_AT)
    env = subprocess_env(8)
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=240)
    assert killed.returncode == -9, killed.stderr[-3000:]
    ids_file = ids_path(workdir, 0, 1)
    assert [int(line.split()[0]) for line in _lines(ids_file)] == list(range(1, KILL_AT + 1))
    assert sorted(p for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()) == ["3"]

    train_and_evaluate(tiny_config(tiny_world, **overrides), workdir)  # the relaunch

    for a, b in zip(*(jax_leaves(_state(w, STEPS)) for w in (straight_run, workdir)), strict=True):
        np.testing.assert_array_equal(a, b)  # params, optimizer moments, counters: bitwise
    assert _rows(workdir) == _rows(straight_run)
    assert _lines(ids_file) == _lines(ids_path(straight_run, 0, 1))
    steps = [int(line.split()[0]) for line in _lines(ids_file)]
    assert steps == list(range(1, STEPS + 1))  # every step's examples consumed exactly once
    # what the killed run wrote after its checkpoint is kept aside, not lost
    moved = [json.loads(line)["step"] for line in _lines(os.path.join(workdir, "metrics.superseded.jsonl"))]
    assert moved == [4, 5]
    assert [int(line.split()[0]) for line in _lines(superseded_path(ids_file))] == [4, 5]


def jax_leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_supersede_moves_later_and_torn_lines_and_loses_nothing(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    lines = ['{"step": 1, "loss": 2.0}', '{"step": 2, "loss": 1.5}', '{"step": 3, "loss": 1.0}', '{"step": 4, "lo']
    with open(path, "w") as f:
        f.write("\n".join(lines))
    assert supersede_after(path, 2) == 2
    assert _lines(path) == lines[:2]
    assert _lines(superseded_path(path)) == lines[2:]
    assert supersede_after(path, 2) == 0 and supersede_after(str(tmp_path / "none"), 0) == 0
