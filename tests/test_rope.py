"""bigvl/models/rope.py and its use in the text tower and the captioners' decoder.

Checked against a float64 complex-number reference (RoFormer's definition: feature pair j of the
vector at position p multiplied by exp(i · p · base^(−2j/K))) and by properties: scores depend on
positions only through their offset; the tower's pooled-only path and the decoder's incremental
path give what their full passes give.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.config import base_config
from bigvl.models import build_model
from bigvl.models.decoder import CaptionDecoder
from bigvl.models.rope import Rope, rope_from_config, rotate, rotate_qk
from tests.helpers.tiny import tiny_towers


def reference_rotate(x: np.ndarray, positions: np.ndarray, base: float, scale: float) -> np.ndarray:
    """x [T, K] in float64 as K/2 complex numbers (feature j, feature j + K/2), times exp(i·angle)."""
    half = x.shape[-1] // 2
    z = x[:, :half] + 1j * x[:, half:]
    angles = positions[:, None] * scale * base ** (-2.0 * np.arange(half) / x.shape[-1])
    z = z * np.exp(1j * angles)
    return np.concatenate([z.real, z.imag], axis=-1)


def test_rotate_matches_complex_reference():
    x = np.random.default_rng(0).normal(size=(1, 7, 1, 8))
    positions = np.arange(7)
    for base, scale in ((10000.0, 1.0), (100.0, 0.25)):
        got = np.asarray(rotate(jnp.asarray(x, jnp.float32), positions, Rope(base, scale)))[0, :, 0]
        np.testing.assert_allclose(got, reference_rotate(x[0, :, 0], positions, base, scale), atol=1e-5)


def test_scores_depend_only_on_relative_offset():
    """q·k after rotating q to position m and k to n is a function of m − n alone (and not of m + n)."""
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(1, 1, 1, 16)), rng.normal(size=(1, 1, 1, 16))
    rope = Rope(base=500.0)

    def score(m, n):
        qm = rotate(jnp.asarray(q, jnp.float32), np.array([m]), rope)
        kn = rotate(jnp.asarray(k, jnp.float32), np.array([n]), rope)
        return float(jnp.sum(qm * kn))

    for offset in (-5, 0, 3, 40):
        scores = [score(m, m - offset) for m in (0, 7, 60, 100) if m - offset >= 0]
        np.testing.assert_allclose(scores, scores[0], rtol=1e-4, atol=1e-4)
    assert abs(score(10, 0) - score(0, 0)) > 1e-3  # and the offset does matter


def test_interpolation_scales_positions():
    """rope_train_length 32 at context 128: position p rotates as p/4 would without interpolation."""
    text = base_config().model.text
    text.update(pos_emb="rope", context_length=128, rope_train_length=32)
    rope = rope_from_config(text)
    assert rope.scale == 0.25
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 9, 1, 8)), jnp.float32)
    np.testing.assert_allclose(rotate(x, np.arange(0, 36, 4), rope), rotate(x, np.arange(9), Rope(rope.base)),
                               atol=1e-5)
    text.pos_emb = "absolute"
    with pytest.raises(ValueError, match="model.text.pos_emb"):
        rope_from_config(text)


def test_rotate_qk_query_positions_match_full():
    """A single query at position p (int32 [B]) is rotated as row p of the full sequence."""
    rng = np.random.default_rng(3)
    q = jnp.asarray(rng.normal(size=(2, 6, 2, 8)), jnp.float32)
    rope = Rope()
    full_q, full_k = rotate_qk(q, q, rope)
    where = jnp.array([1, 4], jnp.int32)
    one_q, one_k = rotate_qk(jnp.take_along_axis(q, where[:, None, None, None], axis=1), q, rope, where)
    np.testing.assert_allclose(one_q, jnp.take_along_axis(full_q, where[:, None, None, None], axis=1), atol=1e-6)
    np.testing.assert_allclose(one_k, full_k, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_rope_text_tower(causal):
    """No position table; pooled-only equals the full pass; a learned-position config is unchanged."""
    model_cfg = tiny_towers(base_config().model, context_length=12, text={"causal": causal, "pos_emb": "rope"})
    model = build_model(model_cfg)
    tokens = jnp.array([[5, 6, 7, 3, 0, 0, 0, 0, 0, 0, 0, 0], [9, 8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]], jnp.int32)
    images = jnp.zeros((2, 16, 16, 3), jnp.uint8)
    params = model.init(jax.random.key(0), images, tokens)["params"]
    assert "pos_embedding" not in params["text"]
    full, _ = model.apply({"params": params}, tokens, method=lambda m, t: m.text(t))
    pooled, _ = model.apply({"params": params}, tokens, method=lambda m, t: m.text(t, pooled_only=True))
    np.testing.assert_allclose(pooled, full, atol=1e-5)
    # a permutation of the tokens changes the embedding (positions are seen at all)
    swapped = tokens.at[0, :3].set(jnp.array([7, 6, 5]))
    other, _ = model.apply({"params": params}, swapped, method=lambda m, t: m.text(t))
    assert float(jnp.max(jnp.abs(other[0] - full[0]))) > 1e-4
    learned = build_model(tiny_towers(base_config().model, context_length=12))
    assert "pos_embedding" in learned.init(jax.random.key(0), images, tokens)["params"]["text"]


def test_rope_decoder_steps_match_full_pass():
    """With RoPE the incremental decoder (KV cache of rotated keys) gives the full pass's logits."""
    decoder = CaptionDecoder(vocab_size=20, context_length=8, width=16, depth=1, num_heads=2, mlp_dim=32,
                             uni_depth=1, rope=Rope())
    tokens = jnp.array([[2, 5, 6, 7, 8], [2, 9, 4, 3, 1]], jnp.int32)
    memory = jnp.asarray(np.random.default_rng(4).normal(size=(2, 3, 16)), jnp.float32)
    params = decoder.init(jax.random.key(1), tokens, memory)["params"]
    assert "pos_embedding" not in params
    full, _ = decoder.apply({"params": params}, tokens, memory)
    cache = decoder.apply({"params": params}, memory, 5, method=CaptionDecoder.init_cache)
    for position in range(5):
        logits, cache = decoder.apply({"params": params}, tokens[:, position], jnp.int32(position), cache,
                                      method=CaptionDecoder.step)
        np.testing.assert_allclose(logits, full[:, position], atol=1e-4)
