"""Each caption strategy against its definition."""
import numpy as np
import pytest

from bigvl.config import base_config
from bigvl.data.caption_strategies import Alt, CaptionError, Mix, Recap, make_caption_strategy

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
