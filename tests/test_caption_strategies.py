"""Each caption strategy against its definition."""
import collections
import pickle

import numpy as np
import pytest

from bigvl.config import base_config
from bigvl.data import world as world
from bigvl.data.caption_strategies import (
    Alt,
    CaptionError,
    Dual,
    FirstSentence,
    LongCaption,
    Mix,
    Multi,
    Partial,
    Recap,
    TokenCounter,
    Uniform,
    make_caption_strategy,
)
from bigvl.data.tokenizer import Tokenizer, train_tokenizer

CAPTIONS = {"short": "a red circle left of a blue square", "long": "A red circle. A blue square."}


def test_alt_and_recap():
    rng = np.random.default_rng(0)
    assert Alt()("red thing clipart", CAPTIONS, rng) == ["red thing clipart"]
    assert Recap("long")("alt", CAPTIONS, rng) == [CAPTIONS["long"]]


def test_mix_rate_over_10000_draws():
    strategy = Mix(p=0.2, field="short")
    rng = np.random.default_rng(123)
    picks = [strategy("alt text", CAPTIONS, rng)[0] == CAPTIONS["short"] for _ in range(10_000)]
    assert 0.18 <= np.mean(picks) <= 0.22


def test_mix_is_deterministic_given_the_rng_seed():
    strategy = Mix(p=0.5)
    draws = lambda: [strategy("alt", CAPTIONS, np.random.default_rng(s))[0] for s in range(50)]  # noqa: E731
    assert draws() == draws()


@pytest.mark.parametrize("alt,captions,strategy", [
    ("", CAPTIONS, Alt()),
    ("   ", CAPTIONS, Alt()),
    ("alt", {}, Recap("short")),
    ("alt", {"short": ""}, Recap("short")),
    ("alt", {"short": b"bytes"}, Recap("short")),
])
def test_missing_or_empty_text_is_a_caption_error(alt, captions, strategy):
    with pytest.raises(CaptionError):
        strategy(alt, captions, np.random.default_rng(0))


def test_make_from_config():
    cfg = base_config().data
    cfg.caption_strategy, cfg.mix_p, cfg.caption_field = "mix", 0.3, "long"
    assert make_caption_strategy(cfg) == Mix(p=0.3, field="long")


# ----------------------------------------------------------------------------- newer strategies
def synthetic_examples(count=60, seed=0):
    """(alt_text, captions) pairs as the synthetic world writes them (no images rendered)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        scene = world.sample_scene(rng, int(rng.integers(1, 5)))
        alt = world.sample_alt_text(scene, rng, world.AltTextNoise())
        captions = {"short": world.short_caption_text(world.sample_short_caption(scene, rng)),
                    "long": world.long_caption(scene, rng)}
        captions.update({f"rewrite_{k}": text for k, text in enumerate(world.rewrite_alt_text(alt, rng, 2))})
        examples.append((world.alt_text_string(alt), captions))
    return examples


EXAMPLES = synthetic_examples()


def long_sentences(caption):
    """Independent of bigvl.data.sentences: the world joins sentences with '. ' and ends with '.'."""
    return [s + "." for s in caption[:-1].split(". ")]


def joined_sentences(text):
    """The sentences of a ' '-joined run of the world's sentences (each ends with '.')."""
    return [p if p.endswith(".") else p + "." for p in text.split(". ")]


def count_words(text):  # a picklable token counter for logic-only tests
    return len(text.split())


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [alt for alt, _ in EXAMPLES] + [t for _, c in EXAMPLES for t in c.values()]
    return Tokenizer(train_tokenizer(texts, tmp_path_factory.mktemp("tok") / "tok", vocab_size=512))


def test_uniform_picks_each_source_a_third_of_the_time():
    alt, captions = EXAMPLES[0]
    sources = {alt: "alt", captions["rewrite_0"]: "rewrite_0", captions["rewrite_1"]: "rewrite_1"}
    assert len(sources) == 3
    strategy, rng = Uniform(), np.random.default_rng(1)
    counts = collections.Counter(sources[strategy(alt, captions, rng)[0]] for _ in range(10_000))
    for name in ("alt", "rewrite_0", "rewrite_1"):  # binomial sd = 0.0047
        assert 0.31 <= counts[name] / 10_000 <= 0.357, counts


def test_uniform_falls_back_to_the_alt_text_for_short_rewrites():
    captions = {"rewrite_0": "circle", "rewrite_1": "a blue star", "rewrite_2": "  "}
    strategy, rng = Uniform(fields=("alt", "rewrite_0", "rewrite_1", "rewrite_2")), np.random.default_rng(2)
    draws = collections.Counter(strategy("red circle clipart", captions, rng)[0] for _ in range(4000))
    assert set(draws) == {"red circle clipart", "a blue star"}
    assert 0.72 <= draws["red circle clipart"] / 4000 <= 0.78  # alt + two fallbacks: 3/4
    one_word_ok = Uniform(fields=("rewrite_0",), min_words=1)
    assert one_word_ok("red circle clipart", captions, rng) == ["circle"]


def test_partial_is_whole_sentences_within_the_token_budget(tokenizer):
    strategy = Partial(32, count_tokens=tokenizer.count_tokens)
    saw_several, saw_reordered = False, False
    for seed, (alt, captions) in enumerate(EXAMPLES):
        sentences = long_sentences(captions["long"])
        for draw in range(5):
            partial, second = strategy(alt, captions, np.random.default_rng([seed, draw]))
            assert second == alt
            picked = joined_sentences(partial)
            assert all(p in sentences for p in picked) and len(set(picked)) == len(picked)
            assert " ".join(picked) == partial
            assert len(picked) == 1 or tokenizer.count_tokens(partial) <= 32
            saw_several |= len(picked) > 1
            positions = [sentences.index(p) for p in picked]
            saw_reordered |= positions != sorted(positions)
    assert saw_several and saw_reordered  # random sentences, concatenated in the sampled order


def test_partial_keeps_an_oversized_first_sentence_whole(tokenizer):
    alt, captions = EXAMPLES[0]
    sentences = long_sentences(captions["long"])
    strategy = Partial(1, count_tokens=tokenizer.count_tokens, with_alt=False)
    for seed in range(20):
        (partial,) = strategy(alt, captions, np.random.default_rng(seed))
        assert partial in sentences and tokenizer.count_tokens(partial) > 1
    assert strategy.num_texts == 1


def test_partial_budget_edges_and_order():
    alt, captions = EXAMPLES[3]
    sentences = long_sentences(captions["long"])
    everything = Partial(10_000, count_tokens=count_words, keep_order=True)
    assert everything(alt, captions, np.random.default_rng(0))[0] == captions["long"]
    shuffled = Partial(10_000, count_tokens=count_words)(alt, captions, np.random.default_rng(0))[0]
    assert sorted(joined_sentences(shuffled)) == sorted(sentences)
    ordered = Partial(25, count_tokens=count_words, keep_order=True)
    for seed in range(30):
        text = ordered(alt, captions, np.random.default_rng(seed))[0]
        positions = [sentences.index(p) for p in joined_sentences(text)]
        assert positions == sorted(positions)


def test_partial_first_sentence_is_uniform():
    alt, captions = EXAMPLES[0]
    sentences = long_sentences(captions["long"])
    strategy, rng = Partial(1, count_tokens=count_words, with_alt=False), np.random.default_rng(3)
    counts = collections.Counter(strategy(alt, captions, rng)[0] for _ in range(4000))
    assert set(counts) == set(sentences)
    expected = 4000 / len(sentences)
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values()), counts


def test_multi_returns_the_raw_caption_and_k_distinct_sentences():
    strategy = Multi(6)
    assert strategy.num_texts == 7
    checked = 0
    for seed, (alt, captions) in enumerate(EXAMPLES):
        sentences = long_sentences(captions["long"])
        texts = strategy(alt, captions, np.random.default_rng(seed))
        assert len(texts) == 7 and texts[0] == alt
        assert all(t in sentences for t in texts[1:])
        if len(sentences) >= 6:
            assert len(set(texts[1:])) == 6
            checked += 1
        else:  # with replacement: every sentence drawn is one of the few there are
            assert len(set(texts[1:])) <= len(sentences)
    assert checked >= 10


def test_multi_variants():
    alt, captions = EXAMPLES[0]
    assert Multi(6, raw_field="long")(alt, captions, np.random.default_rng(0))[0] == captions["long"]
    texts = Multi(3, with_raw=False)(alt, captions, np.random.default_rng(0))
    assert len(texts) == 3 and alt not in texts
    few = {"long": "A star. A ring."}
    texts = Multi(6, with_raw=False)("alt", few, np.random.default_rng(0))
    assert len(texts) == 6 and set(texts) == {"A star.", "A ring."}


def test_long_caption_and_dual():
    for alt, captions in EXAMPLES[:10]:
        assert LongCaption()(alt, captions, None) == [captions["long"], captions["long"].split(". ")[0] + "."]
        assert Dual()(alt, captions, None) == [alt, captions["short"]]
        assert Dual("long")(alt, captions, None) == [alt, captions["long"]]


NEW_STRATEGIES = {
    "uniform": Uniform(),
    "partial": Partial(32, count_tokens=count_words),
    "multi": Multi(6),
    "long": LongCaption(),
    "dual": Dual(),
    "first_sentence": FirstSentence(),
}


@pytest.mark.parametrize("name", NEW_STRATEGIES)
def test_fixed_count_and_determinism_given_the_rng_seed(name):
    strategy = NEW_STRATEGIES[name]
    draws = lambda: [strategy(alt, captions, np.random.default_rng(s))  # noqa: E731
                     for s, (alt, captions) in enumerate(EXAMPLES)]
    first = draws()
    assert first == draws()
    assert all(len(texts) == strategy.num_texts for texts in first)
    if name in ("uniform", "partial", "multi"):  # random ones do vary with the seed
        alt, captions = EXAMPLES[0]
        assert len({tuple(strategy(alt, captions, np.random.default_rng(s))) for s in range(20)}) > 1


@pytest.mark.parametrize("name", NEW_STRATEGIES)
@pytest.mark.parametrize("alt,captions", [
    ("", EXAMPLES[0][1]),
    ("alt text", {}),
    ("alt text", {k: "" for k in EXAMPLES[0][1]}),
    ("alt text", {k: b"bytes" for k in EXAMPLES[0][1]}),
])
def test_new_strategies_raise_caption_error_on_missing_or_empty_text(name, alt, captions):
    strategy = NEW_STRATEGIES[name]
    if name == "uniform" and captions and alt and all(v == "" for v in captions.values()):
        pytest.skip("uniform falls back to the alt-text for empty rewrites (tested above)")
    if name in ("long", "first_sentence") and not alt:
        pytest.skip(f"{name} uses no alt-text")
    with pytest.raises(CaptionError):
        for seed in range(10):  # uniform must fail on every draw, not only when it picks the field
            strategy(alt, captions, np.random.default_rng(seed))


def test_uniform_raises_for_a_missing_or_non_text_field_on_every_draw():
    for seed in range(10):
        for captions in ({"rewrite_0": "a red star"}, {"rewrite_0": "a red star", "rewrite_1": None}):
            with pytest.raises(CaptionError):
                Uniform()("alt text", captions, np.random.default_rng(seed))


def test_partial_pickles_with_its_token_counter(tokenizer, tmp_path):
    alt, captions = EXAMPLES[5]
    for counter in (tokenizer.count_tokens, TokenCounter(tokenizer.path)):
        strategy = Partial(20, count_tokens=counter)
        restored = pickle.loads(pickle.dumps(strategy))
        assert [restored(alt, captions, np.random.default_rng(s)) for s in range(10)] == \
            [strategy(alt, captions, np.random.default_rng(s)) for s in range(10)]
    with pytest.raises(ValueError):
        Partial(32)


def test_make_new_strategies_from_config_defaults_and_keys(tokenizer):
    cfg = base_config().data
    defaults = [("uniform", Uniform()), ("multi", Multi(6)), ("long", LongCaption()), ("dual", Dual())]
    for name, want in defaults:
        cfg.caption_strategy = name
        assert make_caption_strategy(cfg) == want
    cfg.caption_strategy = "partial"
    assert make_caption_strategy(cfg, count_tokens=count_words) == Partial(32, count_tokens=count_words)
    with pytest.raises(ValueError, match="data.tokenizer"):
        make_caption_strategy(cfg)
    cfg.tokenizer = tokenizer.path
    assert make_caption_strategy(cfg) == Partial(32, count_tokens=TokenCounter(tokenizer.path))

    with cfg.unlocked():
        cfg.uniform_fields, cfg.uniform_min_words = ["alt", "rewrite_0"], 3
        cfg.partial_max_tokens, cfg.partial_field, cfg.partial_with_alt = 16, "short", False
        cfg.multi_k, cfg.multi_with_raw, cfg.multi_raw_field = 4, True, "long"
        cfg.long_field = "short"
    cfg.caption_strategy = "uniform"
    assert make_caption_strategy(cfg) == Uniform(fields=("alt", "rewrite_0"), min_words=3)
    cfg.caption_strategy = "partial"
    assert make_caption_strategy(cfg, count_words) == Partial(16, "short", False, count_tokens=count_words)
    cfg.caption_strategy = "multi"
    assert make_caption_strategy(cfg) == Multi(4, raw_field="long")
    cfg.caption_strategy = "long"
    assert make_caption_strategy(cfg) == LongCaption("short")


def test_first_sentence_is_the_long_captions_first_sentence():
    for seed, (alt, captions) in enumerate(EXAMPLES):
        assert FirstSentence()(alt, captions, np.random.default_rng(seed)) == [long_sentences(captions["long"])[0]]
        assert FirstSentence("short")(alt, captions, None) == [captions["short"]]  # one sentence: itself


def test_every_strategy_is_built_from_config_keys_with_its_own_defaults():
    """The schema's data keys are the strategies' defaults (one home); a config names a strategy and
    changes its keys; every strategy validates as a config line."""
    from bigvl.config import validate
    from bigvl.data.caption_strategies import STRATEGIES, strategy_config_defaults
    data = base_config().data
    for key, value in strategy_config_defaults().items():
        assert data[key] == value, key
    cfg = base_config()
    cfg.data.train_paths, cfg.data.tokenizer = ["x"], "x"
    cfg.data.caption_strategy, cfg.data.first_sentence_field = "first_sentence", "short"
    assert make_caption_strategy(cfg.data) == FirstSentence("short")
    validate(cfg)
    for name in STRATEGIES:
        cfg.data.caption_strategy = name
        assert make_caption_strategy(cfg.data, count_tokens=count_words).num_texts >= 1
