"""Recipes as config lines: each validates, the new objectives train through the real step, the ablation summary."""
import json

import numpy as np
import pytest

from bigvl.config import load_config, validate
from bigvl.recipes import RECIPES, apply_recipe
from experiments import ablation
from tests.helpers.tiny import tiny_config


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_is_a_valid_demo_config(name):
    config = load_config(f"recipe_demo:{name},steps=40")
    validate(config)
    assert config.total_steps == 40 and config.eval_steps == 0


@pytest.mark.parametrize("name,strategy,objective", [
    ("partial", "partial", "per_text"), ("multi", "multi", "per_text+multi_positive"),
    ("long", "long", "long_clip"), ("alip", "dual", "alip"), ("dual", "dual", "per_text")])
def test_b16_recipes_set_consistent_knobs(name, strategy, objective):
    """Each recipe's texts and objective, and its knobs checked against the model they run on
    (not against the numbers bigvl/recipes.py writes)."""
    config = load_config(f"configs/recipe_b16.py:{name}")
    assert (config.data.caption_strategy, config.loss.multi_text) == (strategy, objective)
    context = config.model.text.context_length
    if name == "partial":  # the partial caption's budget (EOS not counted) fits the text context
        assert 1 <= config.data.partial_max_tokens < context and config.data.partial_with_alt
    if name == "multi":  # grouping is multi_grouping's addition: off here, on (a valid threshold) there
        assert config.data.multi_k >= 2 and config.loss.grouping_weight == 0
        grouped = load_config("configs/recipe_b16.py:multi_grouping")
        assert grouped.loss.grouping_weight > 0 and 0 <= grouped.loss.grouping_threshold < 1
        assert grouped.data.multi_k == config.data.multi_k
    if name == "long":
        from bigvl.models.pretrained import stretch_positions
        base = load_config("configs/clip_b16.py").model.text.context_length  # the 77-position run it loads
        keep = config.init.stretch_keep
        # Long-CLIP (Zhang et al. 2024): positions 77 → 248, the first 20 kept, the rest stretched 4×
        assert (context - keep) == 4 * (base - keep)
        table = np.arange(base, dtype=np.float64)[:, None]  # row i holds i: the stretch is readable
        stretched = stretch_positions(table, context, keep=keep)
        assert stretched.shape == (context, 1)
        np.testing.assert_array_equal(stretched[:keep, 0], np.arange(keep))  # kept rows copied
        assert np.all(np.diff(stretched[:, 0]) > 0)  # interpolated in order
        assert config.optim.freeze_text_positions == keep  # frozen rows are exactly the copied ones
        # the short term uses the top-k principal components: k below the embedding width, or it is no PCA
        assert 1 <= config.loss.pca_dim < config.model.embed_dim


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
    # by hand from the logged batch means s1, s2: m = 0.99 (0.99 · 1 + 0.01 s1) + 0.01 s2
    s1, s2 = (r["alip_alt_caption_sim"] for r in rows)
    assert ema["alt_caption"] == pytest.approx(0.99 * (0.99 + 0.01 * s1) + 0.01 * s2, abs=1e-6)
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
    config = load_config("recipe_demo:multi_grouping,steps=40")
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
