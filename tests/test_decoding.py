"""Decoding: the KV-cached path against full recomputation and against a naive Python greedy loop;
beam search against exhaustive search; top-p sampling limits."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from captioner_models import BATCH, LENGTH, build, random_tokens

from bigvl.inference.decoding import DecodeConfig, decode

MAX_LEN = 10


@functools.lru_cache(maxsize=None)
def _setup(kind):
    model, params, images = build(kind, seed=7)
    cond = random_tokens(np.random.default_rng(8), BATCH, LENGTH) if kind == "clips" else None
    return model, params, images, cond


def _run(kind, **kw):
    return _run_cached(kind, tuple(sorted(kw.items())))


@functools.lru_cache(maxsize=None)
def _run_cached(kind, items):
    model, params, images, cond = _setup(kind)
    kw = dict(items)
    cfg = DecodeConfig(max_length=kw.pop("max_length", MAX_LEN), **kw)
    fn = jax.jit(lambda p, i, c, r: decode(model, p, i, c, r, cfg))
    return np.asarray(fn(params, images, cond, jax.random.key(0)))


def naive_greedy(setup, max_len):
    """Greedy decoding by hand: recompute the decoder over the whole prefix for every token
    (the prefix is right-padded to a fixed length so one compiled function serves every step)."""
    model, params, images, cond = setup
    memory, lengths = model.apply({"params": params}, images, cond, method="caption_memory")
    logits_fn = jax.jit(lambda p, t, m, n: model.apply({"params": p}, t, m, n, method="caption_logits"))
    seqs = np.full((BATCH, max_len), 0, np.int32)
    for b in range(BATCH):
        prefix = [2]
        for i in range(max_len):
            padded = jnp.asarray([prefix + [0] * (max_len - len(prefix))])
            logits = logits_fn(params, padded, memory[b:b + 1], None if lengths is None else lengths[b:b + 1])
            token = int(jnp.argmax(logits[0, i]))
            seqs[b, i] = token
            if token == 3:
                break
            prefix.append(token)
    return seqs


@pytest.mark.parametrize("kind", ["coca", "clips"])
def test_cached_greedy_and_beam_equal_uncached(kind):  # CLIPS: greedy only (compile time)
    for kw in (dict(method="greedy"), dict(method="beam", beam_size=3))[:2 if kind == "coca" else 1]:
        np.testing.assert_array_equal(_run(kind, **kw), _run(kind, use_cache=False, **kw))


def test_cached_greedy_equals_a_naive_loop_and_sampling_equals_uncached():
    greedy = _run("coca", method="greedy")
    np.testing.assert_array_equal(greedy, naive_greedy(_setup("coca"), MAX_LEN))
    kw = dict(method="sample", top_p=0.8, temperature=1.5)
    np.testing.assert_array_equal(_run("coca", **kw), _run("coca", use_cache=False, **kw))


def test_beam_of_one_and_tiny_top_p_are_greedy():
    greedy = _run("coca", method="greedy")
    np.testing.assert_array_equal(_run("coca", method="beam", beam_size=1), greedy)
    np.testing.assert_array_equal(_run("coca", method="sample", top_p=1e-6), greedy)


def test_beam_search_with_a_full_beam_is_exhaustive():
    model, params, images, _ = _setup("coca")
    vocab = 64
    beam = _run("coca", method="beam", beam_size=vocab, max_length=2, length_penalty=0.0)
    memory, _ = model.apply({"params": params}, images, None, method="caption_memory")
    logits_fn = jax.jit(lambda t, m: model.apply({"params": params}, t, m, method="caption_logits"))
    firsts = jax.nn.log_softmax(logits_fn(jnp.full((BATCH, 1), 2), memory)[:, 0])  # [B, V]
    pairs = jnp.stack([jnp.full((vocab,), 2), jnp.arange(vocab)], axis=1)
    for b in range(BATCH):  # score every 2-token sequence (EOS first: then only padding follows)
        first = firsts[b]
        seconds = jax.nn.log_softmax(logits_fn(pairs, jnp.repeat(memory[b:b + 1], vocab, axis=0))[:, 1], axis=-1)
        scores = np.asarray(first)[:, None] + np.asarray(seconds)  # [first, second]
        scores[3] = -np.inf
        a, c = np.unravel_index(np.argmax(scores), scores.shape)
        best_seq = (3, 0) if float(first[3]) > scores[a, c] else (int(a), int(c))
        assert tuple(beam[b]) == best_seq


def test_top_p_keeps_the_smallest_set_reaching_p():
    from bigvl.inference.decoding import _top_p_filter
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(np.asarray(_top_p_filter(logits, 0.7)))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    kept = np.isfinite(np.asarray(_top_p_filter(logits, 0.81)))
    np.testing.assert_array_equal(kept, [[True, True, True, False]])
