"""open_clip_compare's load-proofing, without torch: the spread, the step minimum, refusing a busy machine."""
import functools
import math
import os

import numpy as np
import pytest

from benchmarks import open_clip_compare
from benchmarks.machine_load import LoadGate


def test_spread_against_numpy():
    times = [1.9, 1.7, 2.4, 1.8, 1.75, 2.0, 1.85]
    got = open_clip_compare.spread(times)
    q1, q3 = np.percentile(times, [25, 75])  # linear interpolation = statistics' "inclusive"
    assert got["median"] == np.median(times) and got["min"] == 1.7 and got["max"] == 2.4
    assert math.isclose(got["iqr"], q3 - q1) and math.isclose(got["std"], np.std(times, ddof=1))
    assert open_clip_compare.spread([2.0]) == {"median": 2.0, "min": 2.0, "max": 2.0, "iqr": 0.0, "std": 0.0}


def test_fewer_than_five_steps_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        open_clip_compare.main(["--python", "python", "--steps", "3"])
    assert e.value.code == 2 and "at least 5 timed steps" in capsys.readouterr().err


def test_a_busy_machine_is_refused_before_anything_runs(monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("measured on a busy machine")
    monkeypatch.setattr(open_clip_compare, "compare_train_step", never)
    monkeypatch.setattr(open_clip_compare, "compare_input_pipeline", never)
    monkeypatch.setattr(open_clip_compare, "LoadGate",
                        functools.partial(LoadGate, loadavg=lambda: (3.2, 2.0, 1.0), window_s=0.01))
    assert open_clip_compare.main(["--python", "python", "--max-load", "1.5"]) == 3
    assert "1-min load average 3.20 > 1.5" in capsys.readouterr().err


def test_busy_run_is_flagged_when_allowed(monkeypatch, capsys):
    fake = {"step_time_ratio": 1.1, "bigvl_params": 10, "cores": [0], "bigvl_step_s": 1.1, "open_clip_step_s": 1.0,
            "bigvl_spread_s": {"iqr": 0.01}, "open_clip_spread_s": {"iqr": 0.02}, "bigvl_gflops_per_s": 1.0,
            "open_clip_gflops_per_s": 1.1}
    monkeypatch.setattr(open_clip_compare, "compare_train_step", lambda *a: dict(fake))
    monkeypatch.setattr(open_clip_compare, "LoadGate",
                        functools.partial(LoadGate, loadavg=lambda: (3.2, 2.0, 1.0), window_s=0.01))
    assert open_clip_compare.main(["--python", "python", "--allow-busy", "--skip-pipeline"]) == 0
    out, err = capsys.readouterr()
    record = __import__("json").loads(out.splitlines()[0])
    assert record["busy"] is True and record["load_before"] == [3.2, 2.0, 1.0]
    assert "BUSY" in out.splitlines()[1] and "WARNING: BUSY MACHINE" in err


def test_pin_cores_keeps_or_sets_the_affinity():
    mine = sorted(os.sched_getaffinity(0))
    assert open_clip_compare.pin_cores(None) == mine
    try:
        assert open_clip_compare.pin_cores(mine[:1]) == mine[:1]
    finally:
        os.sched_setaffinity(0, mine)
