"""Decoding: the KV-cached path against full recomputation and against a naive Python greedy loop;
beam search against exhaustive search; top-p sampling limits; the Captioner's chunking and the
standalone captioning evaluation."""
import functools
import itertools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bigvl import cli
from bigvl.config import base_config
from bigvl.inference.decoding import DecodeConfig, decode, make_captioner
from bigvl.models import build_model
from bigvl.parallel.mesh import make_mesh
from tests.helpers.captioner_models import BATCH, LENGTH, build, random_tokens, tiny_model_config

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


def naive_greedy(setup, max_len, banned=()):
    """Greedy decoding by hand: recompute the decoder over the whole prefix for every token
    (the prefix is right-padded to a fixed length so one compiled function serves every step);
    `banned` ids are never chosen."""
    model, params, images, cond = setup
    memory, lengths = model.apply({"params": params}, images, cond, method="caption_memory")
    logits_fn = jax.jit(lambda p, t, m, n: model.apply({"params": p}, t, m, n, method="caption_logits"))
    seqs = np.full((BATCH, max_len), 0, np.int32)
    for b in range(BATCH):
        prefix = [2]
        for i in range(max_len):
            padded = jnp.asarray([prefix + [0] * (max_len - len(prefix))])
            logits = logits_fn(params, padded, memory[b:b + 1], None if lengths is None else lengths[b:b + 1])
            token = int(jnp.argmax(logits[0, i].at[jnp.asarray(banned, jnp.int32)].set(-jnp.inf)))
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
    """Without EOS (eos_id=-1) one beam is greedy. With EOS, one beam keeps greedy's prefix live and
    pools its EOS extensions: here (greedy never emits EOS in MAX_LEN) the result is the greedy prefix
    + EOS with the best log p / length, scored by hand from the uncached decoder."""
    greedy = _run("coca", method="greedy")
    np.testing.assert_array_equal(_run("coca", method="sample", top_p=1e-6), greedy)
    np.testing.assert_array_equal(_run("coca", method="beam", beam_size=1, eos_id=-1),
                                  _run("coca", method="greedy", eos_id=-1))
    assert not (greedy == 3).any()  # the premise of the reference below
    model, params, images, _ = _setup("coca")
    memory, _ = model.apply({"params": params}, images, None, method="caption_memory")
    inputs = jnp.concatenate([jnp.full((BATCH, 1), 2), jnp.asarray(greedy[:, :-1])], axis=1)  # BOS + prefix
    logp = np.asarray(jax.nn.log_softmax(model.apply({"params": params}, inputs, memory, method="caption_logits")),
                      np.float64)  # [B, MAX_LEN, V]: row j = the next token after greedy[:j]
    words = np.take_along_axis(logp, greedy[..., None], axis=2)[..., 0]  # log p of each greedy token
    ended = (np.cumsum(words, axis=1) - words + logp[..., 3]) / np.arange(1, MAX_LEN + 1)  # greedy[:j] EOS
    want = np.zeros_like(greedy)
    for b, j in enumerate(np.argmax(ended, axis=1)):
        want[b, :j], want[b, j] = greedy[b, :j], 3
    np.testing.assert_array_equal(_run("coca", method="beam", beam_size=1), want)


def test_beam_search_with_a_full_beam_is_exhaustive():
    """The tiny CoCa, max_length 2, 64 beams (every first word stays live), length penalty 1: the result
    is the best of EOS alone and every `word EOS`, scored by brute force over the uncached decoder."""
    model, params, images, _ = _setup("coca")
    vocab = 64
    beam = _run("coca", method="beam", beam_size=vocab, max_length=2, length_penalty=1.0)
    memory, _ = model.apply({"params": params}, images, None, method="caption_memory")
    logits_fn = jax.jit(lambda t, m: model.apply({"params": params}, t, m, method="caption_logits"))
    firsts = jax.nn.log_softmax(logits_fn(jnp.full((BATCH, 1), 2), memory)[:, 0])  # [B, V]
    pairs = jnp.stack([jnp.full((vocab,), 2), jnp.arange(vocab)], axis=1)  # BOS, word
    for b in range(BATCH):
        first = np.asarray(firsts[b], np.float64)
        seconds = jax.nn.log_softmax(logits_fn(pairs, jnp.repeat(memory[b:b + 1], vocab, axis=0))[:, 1], axis=-1)
        two = (first + np.asarray(seconds, np.float64)[:, 3]) / 2.0  # word EOS: log p / 2 tokens
        two[[0, 2, 3]] = -np.inf  # PAD and BOS are never generated; EOS ends the caption
        a = int(np.argmax(two))
        assert abs(two[a] - first[3]) > 1e-4  # no near-tie for float32 to break either way
        assert tuple(beam[b]) == ((3, 0) if first[3] > two[a] else (a, 3))


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
    """`bigvl caption --workdir RUN` reads the run's config.json without bigvl.config (a model whose
    vocabulary holds the world tokenizer's pieces: a smaller one is refused for text use)."""
    from bigvl.data.tokenizer import Tokenizer
    config = base_config()
    config.model = tiny_model_config("coca")
    config.model.text.vocab_size = Tokenizer(tiny_world / "tokenizer.model").vocab_size
    rng = np.random.default_rng(7)
    params = nn.unbox(jax.jit(build_model(config.model).init)(
        jax.random.key(7), rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8), np.full((2, 8), 3, np.int32))["params"])
    config.data.update(tokenizer=str(tiny_world / "tokenizer.model"),
                       train_paths=[str(tiny_world / "train-*.array_record")])
    config.evals.batch_size = 8
    config.evals.captioning.update(split=str(tiny_world / "retrieval.array_record"), max_length=6)
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    with ocp.CheckpointManager(str(tmp_path / "checkpoints")) as manager:
        manager.save(2, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})))
        manager.wait_until_finished()
    assert cli.main(["caption", "--workdir", str(tmp_path), "--samples", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["field"] == "short" and result["workdir"] == str(tmp_path)
    assert all(0.0 <= result[k] <= 10.0 for k in ("cider_d", "baseline_cider_d"))  # CIDEr-D is at most 10
    assert all(0.0 <= result[k] <= 1.0 for k in ("bleu4", "baseline_bleu4"))


# --- a hand-made next-token table as the model: beam search against exhaustive search ---------------
# Ids as in the real models: PAD 0, BOS 2, EOS 3; the other three ids are words.
PAD, BOS, EOS, FAKE_VOCAB, WORDS = 0, 2, 3, 6, (1, 4, 5)


def _code(prefix) -> int:
    """The table row of a prefix of generated ids (BOS not included): mixed radix, 0 = empty prefix."""
    return sum((t + 1) * (FAKE_VOCAB + 1) ** j for j, t in enumerate(prefix))


def _table(rows_of_probs, max_length, default):
    """[R, codes, V] log-probs: row r's next-token distribution after prefix p is rows_of_probs[r].get(p, default)."""
    codes = (FAKE_VOCAB + 1) ** (max_length - 1)
    with np.errstate(divide="ignore"):  # probability 0: log p = -inf
        table = np.tile(np.log(np.asarray(default, np.float64)), (len(rows_of_probs), codes, 1))
        for r, probs in enumerate(rows_of_probs):
            for prefix, p in probs.items():
                table[r, _code(prefix)] = np.log(np.asarray(p, np.float64))
    return table


def _table_stepper(table):
    """A fake model over table [R, codes, V]: state = each slot's prefix code [N] (N = R·beams, row-major)."""
    table_j = jnp.asarray(table, jnp.float32)
    rows = table.shape[0]

    def step(code, token, i):
        code = jnp.where(i > 0, code + (token + 1) * (FAKE_VOCAB + 1) ** jnp.maximum(i - 1, 0), code)
        row = jnp.arange(code.shape[0]) // (code.shape[0] // rows)
        return table_j[row, code], code
    return step


def _run_fake(table, **kw):
    from bigvl.inference.decoding import _beam, _greedy_or_sample
    cfg = DecodeConfig(bos_id=BOS, eos_id=EOS, pad_id=PAD, **kw)
    rows = table.shape[0]
    step = _table_stepper(table)
    if cfg.method == "beam":
        state = jnp.zeros((rows * cfg.beam_size,), jnp.int32)
        return np.asarray(jax.jit(lambda s: _beam(step, s, rows, cfg))(state))
    state = jnp.zeros((rows,), jnp.int32)
    return np.asarray(jax.jit(lambda s, r: _greedy_or_sample(step, s, rows, cfg, r))(state, jax.random.key(1)))


def _exhaustive(table_row, max_length, alpha):
    """The best finished caption by brute force: every word sequence of 0..max_length-1 words then EOS,
    scored sum(log p) / (words + 1)^alpha with the model's log-probs (log_softmax over the full vocabulary)."""
    shifted = table_row - table_row.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    best, best_score = None, -np.inf
    for n in range(max_length):
        for words in itertools.product(WORDS, repeat=n):
            seq = words + (EOS,)
            total = sum(logp[_code(seq[:j]), seq[j]] for j in range(len(seq)))
            if total / len(seq) ** alpha > best_score:
                best, best_score = seq, total / len(seq) ** alpha
    return np.asarray(best + (PAD,) * (max_length - len(best)), np.int32), best_score


def _hand_rows():
    """Two next-token tables (probabilities over ids 0..5 = PAD, a, BOS, EOS, b, c) where a short caption
    has the best raw log p but a longer one the best log p per token; row 1 makes the short one win."""
    eps = 1e-4
    def p(a=0.0, eos=0.0, b=0.0, c=0.0):
        return [eps, a, eps, eos, b, c]
    row0 = {(): p(a=.25, eos=.4, b=.35), (4,): p(a=.1 / 3, eos=.9, b=.1 / 3, c=.1 / 3),
            (1,): p(a=.95, eos=.05 / 3, b=.05 / 3, c=.05 / 3), (1, 1): p(a=.95, eos=.05 / 3, b=.05 / 3, c=.05 / 3),
            (1, 1, 1): p(a=.05 / 3, eos=.95, b=.05 / 3, c=.05 / 3)}
    row1 = dict(row0)
    row1[(1, 1, 1)] = p(a=.3, eos=.2, b=.25, c=.25)
    return [row0, row1], p(a=.25, eos=.25, b=.25, c=.25)


def test_beam_search_ranks_finished_captions_by_length_normalised_score_like_exhaustive_search():
    """beam 2 < vocab 6, max_length 5, length_penalty 1, EOS reachable after 0..4 words. Row 0's best
    caption (a a a EOS, log p / 4 = -0.385) has a lower raw log p than EOS alone (-0.92) and b EOS
    (-1.16): ranked by raw scores those two fill the beam before a a a is complete."""
    rows, default = _hand_rows()
    table = _table(rows, 5, default)
    got = _run_fake(table, method="beam", beam_size=2, max_length=5, length_penalty=1.0)
    for r in range(2):
        want, _ = _exhaustive(table[r], 5, 1.0)
        np.testing.assert_array_equal(got[r], want)
    np.testing.assert_array_equal(got[0], [1, 1, 1, EOS, PAD])  # the hand computation above
    np.testing.assert_array_equal(got[1], [4, EOS, PAD, PAD, PAD])
    raw_best, _ = _exhaustive(table[0], 5, 0.0)  # the case discriminates: raw log p prefers EOS alone
    np.testing.assert_array_equal(raw_best, [EOS, PAD, PAD, PAD, PAD])


def test_beam_search_stops_early_only_when_no_live_beam_can_still_win():
    """One beam, length penalty 1: after step 0 the pool holds EOS alone (log p = -0.51) and the live
    prefix `a` has -1.20, worse than -0.51 even spread over 2 tokens; but a a a EOS, each later token
    p = .99, scores -1.23 / 4 = -0.31 and wins. A stop that assumes the live beam finishes at the next
    step (HF's default heuristic) returns EOS alone; so would greedy decoding."""
    eps = 1e-4
    def p(a=0.0, eos=0.0, b=0.0):
        return [eps, a, eps, eos, b, 0.0]
    rows = [{(): p(a=.3, eos=.6, b=.1), (1,): p(a=.99, eos=.005, b=.005), (1, 1): p(a=.99, eos=.005, b=.005),
             (1, 1, 1): p(a=.005, eos=.99, b=.005)}]
    table = _table(rows, 5, p(a=1 / 3, eos=1 / 3, b=1 / 3))
    want, _ = _exhaustive(table[0], 5, 1.0)
    np.testing.assert_array_equal(want, [1, 1, 1, EOS, PAD])
    np.testing.assert_array_equal(_run_fake(table, method="beam", beam_size=1, max_length=5)[0], want)
    np.testing.assert_array_equal(_run_fake(table, method="greedy", max_length=5)[0], [EOS, PAD, PAD, PAD, PAD])


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_a_beam_as_wide_as_every_prefix_is_exhaustive_search(alpha):
    """Random tables (PAD and BOS carry probability too, never emitted): with 27 = 3^3 beams every word
    prefix of max_length 4 stays live, so the pool, its ranking and the early stop must give the optimum."""
    rng = np.random.default_rng(int(alpha * 10))
    table = rng.normal(0.0, 2.0, (3, (FAKE_VOCAB + 1) ** 3, FAKE_VOCAB))
    got = _run_fake(table, method="beam", beam_size=27, max_length=4, length_penalty=alpha)
    for r in range(3):
        want, _ = _exhaustive(table[r], 4, alpha)
        np.testing.assert_array_equal(got[r], want)


def test_no_method_emits_pad_or_bos_even_when_they_are_the_most_likely():
    """PAD's logit is the largest and BOS's the second at every prefix. Greedy must follow the argmax over
    the other ids (a Python loop over the table), and no method may emit PAD or BOS before EOS."""
    rng = np.random.default_rng(3)
    table = rng.normal(0.0, 1.0, (2, (FAKE_VOCAB + 1) ** 5, FAKE_VOCAB))
    table[..., PAD], table[..., BOS] = 20.0, 15.0
    for r in range(2):  # greedy by hand, skipping PAD and BOS
        prefix, want = (), []
        while len(want) < 6:
            logits = table[r, _code(prefix)].copy()
            logits[[PAD, BOS]] = -np.inf
            want.append(int(np.argmax(logits)))
            if want[-1] == EOS:
                break
            prefix += (want[-1],)
        want += [PAD] * (6 - len(want))
        np.testing.assert_array_equal(_run_fake(table, method="greedy", max_length=6)[r], want)
    for kw in (dict(method="beam", beam_size=3), dict(method="sample", top_p=0.95, temperature=2.0)):
        for row in _run_fake(table, max_length=6, **kw):
            _assert_caption_row(row)


def _assert_caption_row(row):
    """Words, then EOS and padding (or words up to max_length): no PAD or BOS inside the caption."""
    end = list(row).index(EOS) + 1 if EOS in row else len(row)
    assert not np.isin(row[:end], [PAD, BOS]).any(), row
    assert (row[end:] == PAD).all(), row


def test_a_model_favouring_pad_still_captions_through_decode():
    """The tiny CoCa with PAD's and BOS's output biases raised: greedy equals a naive loop that skips them,
    and greedy, beam and top-p rows hold no PAD or BOS inside the caption."""
    model, params, images, cond = _setup("coca")
    bias = params["decoder"]["head"]["bias"]
    params = jax.tree.map(lambda x: x, params)
    params["decoder"]["head"]["bias"] = bias.at[0].add(30.0).at[2].add(20.0)
    for kw in (dict(method="greedy"), dict(method="beam", beam_size=3), dict(method="sample", top_p=0.9)):
        cfg = DecodeConfig(max_length=MAX_LEN, **kw)
        rows = np.asarray(jax.jit(lambda p, i: decode(model, p, i, None, jax.random.key(0), cfg))(params, images))
        for row in rows:
            _assert_caption_row(row)
        if kw["method"] == "greedy":
            np.testing.assert_array_equal(rows, naive_greedy((model, params, images, cond), MAX_LEN, banned=(0, 2)))
