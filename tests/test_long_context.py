"""Long-CLIP positional stretch, frozen rows, and fine-tuning from a shorter-context run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.models.pretrained import adapt_params, stretch_positions
from bigvl.train.optimizer import freeze_rows, make_optimizer
from tests.helpers.tiny import tiny_config


def test_stretch_77_to_248_keeps_20_and_interpolates_4x():
    old = np.random.default_rng(0).normal(size=(77, 8)).astype(np.float32)
    new = stretch_positions(old, 248, keep=20)
    assert new.shape == (248, 8) and new.dtype == np.float32
    np.testing.assert_array_equal(new[:20], old[:20])  # exactly the loaded rows
    for i in range(57):  # every old row lands on slot 20 + 4i
        np.testing.assert_allclose(new[20 + 4 * i], old[20 + i], rtol=1e-6)
    # between rows 30 and 31: 3/4, 1/2, 1/4 of the way, written out
    i = 10
    for j, w in ((1, 0.25), (2, 0.5), (3, 0.75)):
        np.testing.assert_allclose(new[20 + 4 * i + j], (1 - w) * old[30] + w * old[31], rtol=1e-5, atol=1e-6)
    # the last old row extrapolates along its last difference
    step = old[76] - old[75]
    for j in range(4):
        np.testing.assert_allclose(new[244 + j], old[76] + j / 4 * step, rtol=1e-5, atol=1e-6)


def test_stretch_rejects_a_fractional_ratio():
    with pytest.raises(ValueError, match="77 positions to 250"):
        stretch_positions(np.zeros((77, 4)), 250, keep=20)


def _optim_cfg(freeze):
    from bigvl.config import base_config
    cfg = base_config().optim
    cfg.lr, cfg.warmup_steps, cfg.freeze_text_positions = 0.1, 0, freeze
    return cfg


def test_frozen_rows_never_move_under_adamw_with_decay():
    params = {"text": {"pos_embedding": jnp.ones((12, 4))}, "image": {"pos_embedding": jnp.ones((12, 4))}}
    tx, _ = make_optimizer(_optim_cfg(5), total_steps=10)
    state = tx.init(params)
    new = params
    for seed in range(3):
        grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(seed), p.shape), params)
        updates, state = tx.update(grads, state, new)
        new = jax.tree.map(lambda p, u: p + u, new, updates)
    np.testing.assert_array_equal(new["text"]["pos_embedding"][:5], params["text"]["pos_embedding"][:5])
    assert np.all(np.asarray(new["text"]["pos_embedding"][5:]) != 1.0)
    assert np.all(np.asarray(new["image"]["pos_embedding"]) != 1.0)  # only the text table is frozen


def test_freeze_rows_leaves_other_paths_alone():
    tx = freeze_rows("a/w", 2)
    updates = {"a": {"w": jnp.ones((3, 2))}, "b": {"w": jnp.ones((3, 2))}}
    out, _ = tx.update(updates, tx.init(updates))
    np.testing.assert_array_equal(out["a"]["w"], [[0, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(out["b"]["w"], np.ones((3, 2)))


def test_adapt_params_names_a_misfit():
    source = {"text": {"pos_embedding": np.zeros((8, 4))}, "proj": np.zeros((3, 3))}
    target = {"text": {"pos_embedding": jax.ShapeDtypeStruct((14, 4), jnp.float32)},
              "proj": jax.ShapeDtypeStruct((3, 4), jnp.float32)}
    with pytest.raises(ValueError, match="'proj' has shape"):
        adapt_params(source, target, stretch_keep=2)
    with pytest.raises(ValueError, match="'missing' is not in the source"):
        adapt_params(source, {"missing": target["proj"]}, stretch_keep=2)


@pytest.mark.slow
def test_long_clip_finetune_from_a_short_context_run(tiny_world, tiny_run, tmp_path):
    """16 → 28 positions (keep 4, 2×), Long-CLIP objective, 2 steps: rows 0–3 stay the source's."""
    from bigvl.inference.run import load_run
    from bigvl.train.loop import train_and_evaluate
    config = tiny_config(tiny_world, total_steps=2, ckpt_steps=2, **{
        "model.text.context_length": 28, "init.workdir": str(tiny_run), "init.stretch_keep": 4,
        "optim.freeze_text_positions": 4, "data.caption_strategy": "long",
        "loss.multi_text": "long_clip", "loss.pca_dim": 4})
    train_and_evaluate(config, str(tmp_path / "long"))
    source = np.asarray(load_run(str(tiny_run)).params["text"]["pos_embedding"])
    tuned = np.asarray(load_run(str(tmp_path / "long")).params["text"]["pos_embedding"])
    assert tuned.shape == (28, source.shape[1])
    np.testing.assert_array_equal(tuned[:4], source[:4])
    stretched = stretch_positions(source, 28, keep=4)
    assert not np.allclose(tuned[4:], stretched[4:])  # the stretched rows did train
    assert np.abs(tuned[4:] - stretched[4:]).max() < 0.1  # ... starting from the stretch
