"""The recaption experiment (experiments/recaption_experiment.py, recaption_report.py)."""
import csv
import glob
import json
import os

import numpy as np
import pytest

from experiments import recaption_report as report


def test_gap_test_against_hand_numbers():
    rows = [{"arm": arm, "seed": s, "retrieval/t2i_r1": v, "train_time_s": 1.0}
            for arm, values in (("alt", [0.10, 0.12, 0.14]), ("gen", [0.20, 0.22, 0.24]),
                                ("oracle", [0.30, 0.30, 0.30])) for s, v in enumerate(values)]
    summary = report.summarize(rows)
    assert summary["alt"]["retrieval/t2i_r1"] == pytest.approx((0.12, 0.02))  # sample std of 0.10, 0.12, 0.14
    test = report.gap_test(summary)
    assert test["gen_minus_alt"] == pytest.approx(0.10)
    assert test["pooled_std_gen_alt"] == pytest.approx(0.02)  # sqrt((0.02² + 0.02²) / 2)
    assert test["passed"] is True  # 0.10 > 2 · 0.02
    assert test["oracle_minus_gen"] == pytest.approx(0.08)
    assert test["pooled_std_oracle_gen"] == pytest.approx(np.sqrt(0.02 ** 2 / 2))
    close = [{**r, "retrieval/t2i_r1": r["retrieval/t2i_r1"] - (0.07 if r["arm"] == "gen" else 0)} for r in rows]
    assert report.gap_test(report.summarize(close))["passed"] is False  # 0.03 < 0.04


def test_parse_pairs():
    from experiments.recaption_experiment import parse_pairs
    assert parse_pairs("a=1,b.c=x") == [("a", "1"), ("b.c", "x")]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_pairs("a")


@pytest.mark.slow
def test_end_to_end_tiny(tmp_path):
    """World → captioner → recaption → 3 CLIP arms × 2 seeds at a tiny scale; a rerun reuses every stage."""
    from experiments.recaption_experiment import main
    out, work = tmp_path / "docs" / "recap", tmp_path / "work"
    argv = ["--seeds", "0,1", "--clip_steps", "3", "--captioner_steps", "3", "--caption_fraction", "0.25",
            "--workdir", str(work), "--out", str(out), "--world_dir", str(tmp_path / "world"),
            "--world", "num_train=128,num_train_shards=2,num_zeroshot=30,num_retrieval=20,num_hard_negatives=20",
            "--set", "batch_size=16,evals.batch_size=32,model.image.depth=1,model.text.depth=1"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(f"{out}.csv")))
    assert [(r["arm"], r["seed"]) for r in rows] == [(a, s) for s in "01" for a in ("alt", "gen", "oracle")]
    text = open(f"{out}.md").read()
    assert "gen beats alt by > 2 pooled std" in text and "gap to the oracle" in text
    assert "On the 96 uncaptioned train records" in text  # 128 − round(0.25 · 128)
    assert os.path.getsize(f"{out}.png") > 0
    manifest = json.load(open(work / "recaptioned" / "recaption_manifest.json"))
    assert (manifest["records"], manifest["decoded"], manifest["copied"]) == (128, 96, 32)
    finished = {p: os.path.getmtime(p) for p in glob.glob(str(work / "*" / "final_metrics.json"))}
    assert len(finished) == 7  # the captioner and 6 CLIP runs
    assert main(argv) == 0  # everything reused
    assert {p: os.path.getmtime(p) for p in finished} == finished
