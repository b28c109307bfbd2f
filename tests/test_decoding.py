"""Decoding: the KV-cached path against full recomputation and against a naive Python greedy loop;
beam search against exhaustive search; top-p sampling limits; the Captioner's chunking and the
standalone captioning evaluation."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from captioner_models import BATCH, LENGTH, build, random_tokens, tiny_model_config

from bigvl.config import base_config
from bigvl.evaluators import captioning
from bigvl.inference.decoding import DecodeConfig, decode, make_captioner
from bigvl.parallel.mesh import make_mesh

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


class _LookupTokenizer:
    """encode: each text is the str() of its token row (a stand-in for sentencepiece); decode: the ids joined."""

    def encode(self, texts, length):
        return np.stack([np.asarray(json.loads(t), np.int32)[:length] for t in texts])

    def decode(self, ids):
        return " ".join(map(str, ids))


@pytest.mark.parametrize("kind,rows", [("coca", 11), ("clips", 5)])
def test_captioner_chunks_and_shards_like_one_whole_batch_decode(kind, rows):
    model, params, _ = build(kind, seed=7)
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (rows, 16, 16, 3)).astype(np.uint8)
    cond = random_tokens(rng, rows, LENGTH) if kind == "clips" else None
    captioner = make_captioner(model, _LookupTokenizer(), tiny_model_config(kind),
                               make_mesh({"data": -1, "fsdp": 1, "tensor": 1}), (), batch_size=8)
    cfg = DecodeConfig(max_length=MAX_LEN)
    got = captioner.tokens(params, images, None if cond is None else [json.dumps(r.tolist()) for r in cond], cfg)
    want = jax.jit(lambda p, i, c: decode(model, p, i, c, jax.random.key(0), cfg))(params, images, cond)
    np.testing.assert_array_equal(got, np.asarray(want))  # chunks of 8 (the last padded) on 8 devices


def test_captioning_main_on_a_saved_coca_run(tiny_world, tmp_path, capsys):
    """`python -m bigvl.evaluators.captioning --workdir RUN` reads the run's config.json without bigvl.config."""
    _, params, _ = build("coca", seed=7)
    config = base_config()
    config.model = tiny_model_config("coca")
    config.data.update(tokenizer=str(tiny_world / "tokenizer.model"),
                       train_paths=[str(tiny_world / "train-*.array_record")])
    config.evals.update(batch_size=8, captioning=str(tiny_world / "retrieval.array_record"), captioning_max_length=6)
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    with ocp.CheckpointManager(str(tmp_path / "checkpoints")) as manager:
        manager.save(2, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})))
        manager.wait_until_finished()
    result = captioning.main(["--workdir", str(tmp_path), "--samples", "1"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result and result["field"] == "short"
    assert all(0.0 <= result[k] for k in ("cider_d", "bleu4", "baseline_cider_d", "baseline_bleu4"))
