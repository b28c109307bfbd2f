"""Recipes as config lines: each validates, the new objectives train through the real step, the ablation summary."""
import json

import numpy as np
import pytest
from tiny import tiny_config

from bigvl.tools import ablation
from bigvl.config import load_config, validate
from bigvl.recipes import RECIPES, apply_recipe


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_is_a_valid_demo_config(name):
    config = load_config(f"configs/recipe_demo.py:{name},40")
    validate(config)
    assert config.total_steps == 40 and config.eval_steps == 0


@pytest.mark.parametrize("name,strategy,objective", [
    ("partial", "partial", "per_text"), ("multi", "multi", "per_text+multi_positive"),
    ("long", "long", "long_clip"), ("alip", "dual", "alip"), ("dual", "dual", "per_text")])
def test_b16_recipes_set_the_published_knobs(name, strategy, objective):
    config = load_config(f"configs/recipe_b16.py:{name}")
    assert (config.data.caption_strategy, config.loss.multi_text) == (strategy, objective)
    if name == "partial":
        assert config.data.partial_max_tokens == 32 and config.data.partial_with_alt
    if name == "multi":
        assert config.data.multi_k == 6 and config.loss.grouping_weight == 0
        grouped = load_config("configs/recipe_b16.py:multi_grouping")
        assert (grouped.loss.grouping_weight, grouped.loss.grouping_threshold) == (1.0, 0.1)
    if name == "long":
        assert config.model.text.context_length == 248 and config.optim.freeze_text_positions == 20
        assert config.init.stretch_keep == 20 and config.loss.pca_dim == 32


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match="'bogus'"):
        apply_recipe(load_config("configs/recipe_demo.py:alt"), "bogus")


@pytest.mark.slow
def test_alip_trains_and_checkpoints_its_ema_state(tiny_world, tmp_path):
    import orbax.checkpoint as ocp
    from bigvl.train.loop import train_and_evaluate
    config = tiny_config(tiny_world, total_steps=2, ckpt_steps=2)
    apply_recipe(config, "alip", "demo")
    validate(config)
    train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert all(0 < r["alip_sample_gate"] <= 1 for r in rows)
    saved = ocp.StandardCheckpointer().restore(str(tmp_path / "checkpoints" / "2" / "state"))
    ema = {k: float(v) for k, v in saved["loss_state"].items()}  # 2 EMA updates from 1.0, in the checkpoint
    assert set(ema) == {"alt_caption", "image_alt", "image_caption"}
    assert all(v != 1.0 and abs(v - 1.0) < 0.03 for v in ema.values())


@pytest.mark.slow
def test_dreamlip_grouping_trains_through_the_real_step(tiny_world, tmp_path):
    from bigvl.train.loop import train_and_evaluate
    config = tiny_config(tiny_world, total_steps=2)
    apply_recipe(config, "multi_grouping", "demo")
    config.data.multi_k = 2
    validate(config)
    train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2]
    # the term is logged and part of the loss (per_text + multi_positive + grouping)
    assert all(np.isfinite(r["loss"]) and 0 < r["grouping_loss"] < r["loss"] for r in rows)


def test_grouping_loss_config_contradictions_are_named():
    from bigvl.config import ConfigError
    config = load_config("configs/recipe_demo.py:multi_grouping,40")
    config.loss.grouping_threshold = 1.0
    with pytest.raises(ConfigError, match="loss.grouping_threshold"):
        validate(config)
    config = load_config("configs/coca_demo.py")
    config.loss.grouping_weight = 1.0
    with pytest.raises(ConfigError, match="loss.grouping_weight.*model.kind"):
        validate(config)


def test_ablation_summary_is_mean_and_sample_std(tmp_path):
    rows = [{"recipe": r, "seed": s, "train_time_s": 1.0, **{k: v + s for k, _ in ablation.METRICS}}
            for r, v in (("alt", 0.1), ("mix", 0.3)) for s in range(3)]
    summary = ablation.summarize(rows, ["alt", "mix"])
    mean, std = summary[1]["retrieval/t2i_r1"]
    np.testing.assert_allclose([mean, std], [1.3, 1.0])  # values 0.3, 1.3, 2.3
    table = ablation.markdown_table(summary, steps=10, batch=4)
    assert "| mix | 3 | 1.300 ± 1.000" in table
