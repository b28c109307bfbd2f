"""Classifier-free guidance: which captions train without their image, and guided decoding (KV cache)
against a naive loop of full recomputations with and without the image; cached == uncached, also in beam
search."""
import jax
import jax.numpy as jnp
import numpy as np

from bigvl.inference.decoding import DecodeConfig, decode
from bigvl.models.guidance import drop_memory, dropped_images
from tests.helpers.captioner_models import BATCH, build

MAX_LEN, W = 8, 2.0


def test_dropped_images_are_a_fraction_p_that_follows_the_pixels():
    images = np.random.default_rng(0).integers(0, 256, size=(4000, 8, 8, 3), dtype=np.uint8)
    dropped = np.asarray(dropped_images(jnp.asarray(images), 0.1))
    assert abs(dropped.mean() - 0.1) < 3 * np.sqrt(0.1 * 0.9 / 4000)  # within 3 sigma of Binomial(4000, 0.1)
    np.testing.assert_array_equal(dropped, np.asarray(dropped_images(jnp.asarray(images), 0.1)))
    moved = images.copy()
    moved[:, 0, 0, 0] ^= 1  # one pixel changed: another draw
    assert np.mean(np.asarray(dropped_images(jnp.asarray(moved), 0.1)) != dropped) > 0.1
    memory = jnp.ones((4000, 2, 3))
    kept = np.asarray(drop_memory(memory, jnp.asarray(images), 0.1))
    np.testing.assert_array_equal(kept[dropped], 0.0)
    np.testing.assert_array_equal(kept[~dropped], 1.0)


def _decode(**kw):
    model, params, images = build("coca", seed=7)
    cfg = DecodeConfig(max_length=MAX_LEN, **kw)
    return np.asarray(jax.jit(lambda p, i: decode(model, p, i, None, jax.random.key(0), cfg))(params, images))


def _naive_guided_greedy(w):
    """By hand: for every token, the decoder over the whole prefix with the image's memory and with zeros;
    the argmax of (1 + w) log p(·|image) − w log p(·) (PAD, BOS banned)."""
    model, params, images = build("coca", seed=7)
    memory, _ = model.apply({"params": params}, images, None, method="caption_memory")
    logits_fn = jax.jit(lambda t, m: model.apply({"params": params}, t, m, None, method="caption_logits"))
    seqs = np.zeros((BATCH, MAX_LEN), np.int32)
    for b in range(BATCH):
        prefix = [2]
        for i in range(MAX_LEN):
            padded = jnp.asarray([prefix + [0] * (MAX_LEN - len(prefix))])
            cond = jax.nn.log_softmax(logits_fn(padded, memory[b:b + 1])[0, i])
            uncond = jax.nn.log_softmax(logits_fn(padded, jnp.zeros_like(memory[b:b + 1]))[0, i])
            token = int(jnp.argmax(((1 + w) * cond - w * uncond).at[jnp.asarray([0, 2])].set(-jnp.inf)))
            seqs[b, i] = token
            if token == 3:
                break
            prefix.append(token)
    return seqs


def test_guided_greedy_equals_a_naive_loop_and_the_cache_changes_nothing():
    guided = _decode(guidance=W)
    np.testing.assert_array_equal(guided, _naive_guided_greedy(W))
    np.testing.assert_array_equal(guided, _decode(guidance=W, use_cache=False))
    beam = dict(guidance=W, method="beam", beam_size=2)  # the beam's row gathers move both copies of a row
    np.testing.assert_array_equal(_decode(**beam), _decode(use_cache=False, **beam))
    assert not np.array_equal(guided, _decode())  # the tiny model's captions move with w = 2
