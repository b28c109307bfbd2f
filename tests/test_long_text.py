"""bigvl/losses/long_text.py (TULIP's cosine distillation, FIX-CLIP's two branches and image masks),
bigvl/inference/windowed_text.py (the teacher's windows over long texts) and the recipes that use them.

Losses are checked against float64 NumPy references; masks and windows by counting.
"""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.config import ConfigError, load_config, validate
from bigvl.inference.windowed_text import window_starts, windowed_tokens
from bigvl.losses.long_text import cosine_distillation_loss, fix_clip_loss, mask_image_patches
from bigvl.recipes import apply_recipe
from tests.helpers.tiny import tiny_config


def normalise(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_info_nce(image, text, scale):
    """float64 CLIP loss: mean of row and column cross-entropies of scale · image · textᵀ."""
    logits = scale * image @ text.T

    def ce(lg):
        lg = lg - lg.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(lg).sum(axis=1)) - np.diag(lg))
    return 0.5 * (ce(logits) + ce(logits.T))


def test_cosine_distillation_matches_reference():
    rng = np.random.default_rng(0)
    student, teacher = normalise(rng.normal(size=(6, 8))), 3.0 * rng.normal(size=(6, 8))
    want = np.mean(1.0 - np.sum(student * normalise(teacher), axis=-1))
    np.testing.assert_allclose(cosine_distillation_loss(jnp.asarray(student), jnp.asarray(teacher)), want, rtol=1e-5)
    with pytest.raises(ValueError, match="embed_dim"):
        cosine_distillation_loss(jnp.asarray(student), jnp.zeros((6, 4)))


def test_fix_clip_loss_is_the_mean_of_its_two_branches():
    rng = np.random.default_rng(1)
    image, masked = normalise(rng.normal(size=(5, 8))), normalise(rng.normal(size=(5, 8)))
    texts = normalise(rng.normal(size=(5, 2, 8)))
    want = 0.5 * (reference_info_nce(image, texts[:, 0], 7.0) + reference_info_nce(masked, texts[:, 1], 7.0))
    got = fix_clip_loss(jnp.asarray(image), jnp.asarray(masked), jnp.asarray(texts), jnp.float32(7.0))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_image_masks_cover_the_ratio_of_whole_patches():
    images = jnp.full((3, 16, 16, 3), 7, jnp.uint8)
    keys = jnp.array([5, 6, 5])
    masked = np.asarray(mask_image_patches(images, keys, 4, 0.5))
    grid = masked[..., 0].reshape(3, 4, 4, 4, 4).transpose(0, 1, 3, 2, 4).reshape(3, 16, 16)
    assert set(np.unique(masked)) == {7, 128}
    assert np.all((grid == 128).all(axis=-1) | (grid == 7).all(axis=-1))  # whole patches only
    assert [(g == 128).all(axis=-1).sum() for g in grid] == [8, 8, 8]  # half of the 16 patches
    np.testing.assert_array_equal(masked[0], masked[2])  # the same key, the same mask
    assert not np.array_equal(masked[0], masked[1])


def test_windows_cover_every_token_within_the_context():
    assert window_starts(5, 7, 3) == [0]
    assert window_starts(20, 7, 3) == [0, 3, 6, 9, 12, 13]
    pad, eos, context = 0, 3, 8
    long_ids = list(range(10, 30))  # 20 text tokens: several windows of 7
    tokens = np.full((2, 40), pad, np.int32)
    tokens[0, :21] = long_ids + [eos]
    tokens[1, :3] = [11, 12, eos]
    windows, owner = windowed_tokens(tokens, pad, eos, context)
    assert windows.shape[1] == context and list(owner).count(1) == 1
    seen = set()
    for row in windows[owner == 0]:
        ids = [int(t) for t in row if t not in (pad, eos)]
        assert len(ids) == context - 1 and ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous
        assert row[len(ids)] == eos  # each window ends in EOS
        seen.update(ids)
    assert seen == set(long_ids)
    np.testing.assert_array_equal(windows[owner == 1][0], [11, 12, eos, pad, pad, pad, pad, pad])


def test_long_caption_recipes_set_their_keys():
    tulip1 = load_config("recipe_demo:tulip_distill,steps=40")
    assert tulip1.model.text.pos_emb == "rope" and tulip1.loss.distill_kind == "cosine"
    assert tulip1.loss.distill_weight == 1.0 and tulip1.data.uniform_fields == ["short", "long"]
    assert "teacher_windowed" in tulip1.data.train_paths[0]
    tulip2, fix = load_config("recipe_demo:tulip,steps=40"), load_config("recipe_demo:fix_clip,steps=40")
    for config in (tulip2, fix):  # [long, short] per image
        assert (config.data.multi_raw_field, config.data.multi_field, config.data.multi_k) == ("long", "short", 1)
    assert fix.loss.multi_text == "fix_clip" and fix.model.text.pos_emb == "learned"
    fix.data.caption_strategy = "long"
    with pytest.raises(ConfigError, match="fix_clip"):
        validate(fix)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fix_clip", "tulip"])
def test_long_caption_recipes_train_through_the_real_step(recipe, tiny_world, tmp_path):
    from bigvl.train.loop import train_and_evaluate
    config = tiny_config(tiny_world, total_steps=2)
    apply_recipe(config, recipe, "demo")
    config.model.text.context_length = 48
    validate(config)
    train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)


def test_information_oracle_counts_ties():
    """experiments.long_captions: an oracle that reads only a key ranks the images sharing it at random."""
    from experiments.long_captions import oracle_t2i_r1, truncated_facts
    assert oracle_t2i_r1(["a", "b", "c"]) == 1.0
    assert oracle_t2i_r1(["a", "a", "b", "b"]) == 0.5
    np.testing.assert_allclose(oracle_t2i_r1(["a", "a", "a", "b"]), (3 * (1 / 3) + 1) / 4)
    assert truncated_facts("A large red circle is in the top left. The background is plain grey") == \
        ("circle", "grey", "large", "left", "red", "top")
