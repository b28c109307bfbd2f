"""Two processes over loopback (gloo) train, checkpoint and resume like one process does.

Each process has 2 CPU devices and reads only its half of every global batch; the
reference is the single-process run on 8 devices (`tiny_run`). Same global batches →
same params.
"""

import jax
import numpy as np
import pytest

from bigvl.inference.run import load_run
from bigvl.train.example_ids import ids_path, read_ids
from tests.helpers.multihost_launch import launch, tiny_config_file

pytestmark = pytest.mark.slow  # second tier: end-to-end (README, .ci/run)



def _launch(num_processes, local_devices, workdir, config, *overrides):
    results = launch(num_processes, local_devices, workdir, config, *overrides)
    for returncode, out in results:
        assert returncode == 0, out[-3000:]
    return [out for _, out in results]


def test_two_processes_train_resume_and_match_one_process(tiny_world, tiny_run, tmp_path):
    config = tiny_config_file(tmp_path, tiny_world)
    _launch(2, 2, tmp_path / "multi", config, "--config.total_steps=3")  # stopped after step 3
    outputs = _launch(2, 2, tmp_path / "multi", config)  # relaunched: resumes at 3, runs to 6
    assert "restored checkpoint at step 3" in outputs[0]
    assert "devices 2 local / 4 global" in outputs[1]
    # Each host logged the record ids it consumed (workdir/example_ids/host_<i>-of-<n>.txt): at
    # every step the two hosts' ids are disjoint, and together they are the single-process run's.
    single_ids = read_ids(ids_path(str(tiny_run), 0, 1))
    host_ids = [read_ids(ids_path(str(tmp_path / "multi"), i, 2)) for i in range(2)]
    steps = list(range(1, 7))
    assert [s for s, _ in single_ids] == steps
    assert all([s for s, _ in h] == steps for h in host_ids)  # resumed: steps 4-6 once each
    for (step, want), (_, a), (_, b) in zip(single_ids, *host_ids):
        assert len(want) == 16 and len(a) == len(b) == 8, step
        assert not set(a) & set(b), (step, sorted(set(a) & set(b)))
        assert sorted(a + b) == sorted(want), step
    single, multi = load_run(str(tiny_run)), load_run(str(tmp_path / "multi"))
    assert multi.step == single.step == 6
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(multi.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)  # gloo sums in another order
