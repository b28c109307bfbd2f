"""The caption-information floors against hand-counted batches and the world's own structure."""
import json
import math

import numpy as np
import pytest

from bigvl.data.world import world_params
from experiments import caption_information as ci


def test_floor_is_the_mean_log_count_of_each_key_in_its_batch():
    keys = ["a", "a", "b", "c"]  # the whole set is the only batch of 4
    assert ci.batch_floor(keys, 4, num_batches=3) == pytest.approx((2 * math.log(2)) / 4)
    assert ci.batch_floor(["x"] * 5, 5, num_batches=2) == pytest.approx(math.log(5))
    assert ci.batch_floor(list("abcde"), 5, num_batches=2) == 0.0
    with pytest.raises(ValueError, match="batch_size 6"):
        ci.batch_floor(list("abcde"), 6)


def test_blind_keys_merge_exactly_the_texts_that_differ_in_that_word():
    assert ci.shape_blind("a red circle left of a blue square") == ci.shape_blind("A red star left of a blue ring")
    assert ci.shape_blind("a red circle") != ci.shape_blind("a blue circle")
    assert ci.colour_blind("Red-Circle-Clipart.png") == ci.colour_blind("blue circle clipart png")
    assert ci.colour_blind("a red circle") != ci.colour_blind("a red square")
    texts = ["a red circle", "a red square", "a blue circle", "a blue square"]
    result = ci.floors(texts, 4, num_batches=2)
    assert result["full"] == 0.0
    assert result["shape_gap"] == pytest.approx(math.log(2)) and result["colour_gap"] == pytest.approx(math.log(2))


def test_one_object_captions_without_background_need_shape():
    """One object per image, no background named: a caption is its colour × shape class, so with
    30 equally likely classes the shape-blind floor must come near E[log(1 + Binomial(B-1, 1/6))]."""
    params = world_params(num_train=400, num_zeroshot=1, num_retrieval=1, num_hard_negatives=1,
                          scene={"max_objects": 1, "p_caption_background": (0.0, 0.0)})
    texts = ci.train_texts(params, "recap", 400)
    assert all(" background" not in t for t in texts)
    batch = 32
    result = ci.floors(texts, batch, num_batches=300)
    rng = np.random.default_rng(0)  # an independent estimate from the binomial model
    expected_blind = np.mean(np.log(1 + rng.binomial(batch - 1, 1 / 6, 200_000)))
    expected_full = np.mean(np.log(1 + rng.binomial(batch - 1, 1 / 30, 200_000)))
    assert result["shape_blind"] == pytest.approx(expected_blind, abs=0.08)
    assert result["full"] == pytest.approx(expected_full, abs=0.08)
    demo_style = world_params(num_train=400, num_zeroshot=1, num_retrieval=1, num_hard_negatives=1)
    assert ci.floors(ci.train_texts(demo_style, "recap", 400), batch)["shape_gap"] < result["shape_gap"] / 5


def test_cli_writes_one_row_per_variant_and_refuses_an_unknown_one(tmp_path, capsys):
    out = tmp_path / "info"
    assert ci.main(["--variants", "shape_world_recap", "--examples", "120", "--batch", "16", "--out", str(out)]) == 0
    rows = json.loads((tmp_path / "info.json").read_text())
    assert [(r["variant"], r["strategy"], r["batch"]) for r in rows] == [("shape_world_recap", "recap", 16)]
    assert rows[0]["shape_blind"] >= rows[0]["full"] and rows[0]["shape_gap"] > 0
    assert "| shape_world_recap | recap |" in (tmp_path / "info.md").read_text()
    with pytest.raises(SystemExit):
        ci.main(["--variants", "shape_wrld"])
    assert "'shape_wrld' is not one of" in capsys.readouterr().err
