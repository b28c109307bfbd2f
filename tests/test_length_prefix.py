"""FlexCap-style length control: the target's "N words:" prefix, and decoding forced to start with given
tokens against a naive loop of full recomputations from that prefix."""
import jax
import jax.numpy as jnp
import numpy as np

from bigvl.config import base_config
from bigvl.data.length_prefix import MIXED_LENGTHS, MixedLengths, strip_length_prefix, with_length_prefix, word_count
from bigvl.data.pipeline import ExampleProcessor
from bigvl.inference.decoding import DecodeConfig, decode
from tests.helpers.captioner_models import BATCH, build

MAX_LEN, PREFIX = 8, (17, 9, 30)


def test_prefix_counts_words_and_strips_back():
    text = "a red circle left of  a blue square"
    assert word_count(text) == 8
    assert with_length_prefix(text) == "8 words: " + text
    assert strip_length_prefix(with_length_prefix(text)) == text
    assert strip_length_prefix("12 circles") == "12 circles"


def test_the_pipeline_prefixes_the_target_only_when_asked():
    data = base_config().data
    data.target_length_prefix = True
    record = {"alt_text": "clipart", "captions": {"short": "a red circle"}}
    rng = np.random.default_rng(0)
    on = ExampleProcessor(data, 32, 16, "unused.model", target_field="short", target_length=16)
    assert on._target_texts(record, rng) == ["3 words: a red circle"]
    data.target_length_prefix = False
    off = ExampleProcessor(data, 32, 16, "unused.model", target_field="short", target_length=16)
    assert off._target_texts(record, rng) == ["a red circle"]
    mixed = ExampleProcessor(data, 32, 16, "unused.model", target_field=MIXED_LENGTHS, target_length=16)
    assert isinstance(mixed.target, MixedLengths)


def _naive_greedy_from(prefix):
    """By hand: BOS + prefix, then the argmax of a full recomputation per position (PAD, BOS banned)."""
    model, params, images = build("coca", seed=7)
    memory, _ = model.apply({"params": params}, images, None, method="caption_memory")
    logits_fn = jax.jit(lambda t, m: model.apply({"params": params}, t, m, None, method="caption_logits"))
    seqs = np.zeros((BATCH, MAX_LEN), np.int32)
    for b in range(BATCH):
        tokens = [2, *prefix]
        seqs[b, :len(prefix)] = prefix
        for i in range(len(prefix), MAX_LEN):
            logits = logits_fn(jnp.asarray([tokens + [0] * (MAX_LEN - len(tokens))]), memory[b:b + 1])[0, i]
            token = int(jnp.argmax(logits.at[jnp.asarray([0, 2])].set(-jnp.inf)))
            seqs[b, i] = token
            if token == 3:
                break
            tokens.append(token)
    return seqs


def test_forced_prefix_decoding_continues_like_a_naive_loop():
    model, params, images = build("coca", seed=7)
    outs = {}
    for use_cache in (True, False):
        cfg = DecodeConfig(max_length=MAX_LEN, prefix=PREFIX, use_cache=use_cache)
        outs[use_cache] = np.asarray(jax.jit(lambda p, i, c=cfg: decode(model, p, i, None, jax.random.key(0), c))(
            params, images))
    np.testing.assert_array_equal(outs[True], _naive_greedy_from(PREFIX))
    np.testing.assert_array_equal(outs[True], outs[False])


def test_mixed_lengths_draws_the_short_caption_a_rewrite_or_leading_long_sentences():
    long = "One two three. Four five six seven. Eight nine. Ten eleven twelve thirteen fourteen."
    captions = {"short": "a red circle", "rewrite_0": "red circle art", "long": long}
    target = MixedLengths(max_words=9)
    rng = np.random.default_rng(0)
    drawn = [target(None, captions, rng)[0] for _ in range(200)]
    allowed = {"a red circle", "red circle art", "One two three.", "One two three. Four five six seven.",
               "One two three. Four five six seven. Eight nine."}  # the 4th sentence would pass 9 words
    assert set(drawn) == allowed
    assert 0.4 < np.mean([d in ("a red circle", "red circle art") for d in drawn]) < 0.6
