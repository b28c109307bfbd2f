"""experiments/ablation.py: TULIP's equal-compute budget, appending rows to a shared CSV, the gaps in pooled std.

Budgets are checked against the stated split, gaps against a hand-computed pooled std (NumPy, ddof=1).
"""
import csv

import numpy as np
import pytest

from experiments.ablation import METRICS, append_rows, gap_lines, tulip_budget


def test_tulip_budget_adds_up_to_the_other_arms_steps():
    assert tulip_budget(600) == (300, 100, 200)  # own teacher half, stage 1 a third of the rest
    assert tulip_budget(600, own_teacher=False) == (0, 200, 400)  # a finished teacher: fine-tuning only
    for steps in (7, 250, 601, 1000):
        teacher, stage1, stage2 = tulip_budget(steps)
        assert teacher + stage1 + stage2 == steps and teacher == steps // 2 and stage1 == (steps - teacher) // 3


def test_append_rows_keeps_the_file_and_refuses_a_second_copy(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("recipe,seed,zeroshot/top1,train_time_s\nalt,0,0.2,10.0\n")
    append_rows([{"recipe": "tulip", "seed": 0, "zeroshot/top1": 0.6, "retrieval/t2i_r1": 0.2, "train_time_s": 5.0}],
                str(path))
    rows = list(csv.DictReader(open(path)))
    assert [(r["recipe"], r["seed"], r["zeroshot/top1"]) for r in rows] == [("alt", "0", "0.2"), ("tulip", "0", "0.6")]
    assert list(rows[1]) == ["recipe", "seed", "zeroshot/top1", "train_time_s"]  # the file's header, extra keys dropped
    with pytest.raises(ValueError, match="'tulip' seed 0 is already there"):
        append_rows([{"recipe": "tulip", "seed": 0}], str(path))


def test_gap_lines_in_pooled_std():
    base, ours = [0.20, 0.22, 0.24], [0.30, 0.31, 0.35]
    rows = [{"recipe": r, "seed": s, **{k: v[s] + 0.0 for k, _ in METRICS}, "train_time_s": 1.0}
            for r, v in (("recap", base), ("tulip", ours)) for s in range(3)]
    pooled = np.sqrt((np.var(base, ddof=1) + np.var(ours, ddof=1)) / 2)
    z = (np.mean(ours) - np.mean(base)) / pooled
    (line,) = gap_lines(rows, ["tulip"], "recap")
    assert line.startswith("Gaps tulip − recap: zero-shot top-1 +0.100")
    assert f"({z:+.1f} std, > 2)" in line and z > 2
