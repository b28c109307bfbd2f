"""Which text a training example uses: the caption strategies of the recaption papers.

A strategy maps (alt_text, captions, rng) to the list of texts for one example; the
rng comes from grain, seeded by (seed, position in the stream), so the same seed and
step give the same text and a restored iterator draws the same texts again. Each
strategy returns exactly `num_texts` texts, so batches of tokens are [B, T, L].

- `alt`: the web alt-text only (CLIP/ALIGN baseline).
- `recap`: a synthetic caption only (`caption_field`).
- `mix(p)`: the synthetic caption with probability p, else the alt-text
  (Recap-DataComp-1B / CLIPS use p = 0.2; VeCLIP mixes at random).
- `uniform(fields)`: LaCLIP: one of the alt-text and its rewrites, uniformly.
- `partial(K)`: CLIPS: random whole sentences of the long caption within K tokens,
  plus the alt-text as a second positive.
- `multi(k)`: DreamLIP: k sentences of the long caption plus the raw caption.
- `long`: Long-CLIP: the long caption and its first sentence.
- `dual`: the alt-text and a synthetic caption, each with its own contrastive term.
- `first_sentence`: the first sentence of a (long) caption.

Texts go to the tokenizer as they are: a text longer than the context is truncated
there (EOS kept last).

`data.min_caption_score` (0 = off; any strategy): a chosen text that is a whole caption
whose stored CLIP score (extras["clip_score"][name], data/score_captions.py) is below it
is replaced by the alt-text (`score_fallback`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from bigvl.data.hard_negatives import EDITS as NEGATIVE_EDITS
from bigvl.data.sentences import join_sentences, split_sentences
from bigvl.data.tokenizer import Tokenizer

ALT = "alt"  # in a list of fields: the alt-text itself
SCORE_KEY = "clip_score"  # extras[SCORE_KEY] = {"alt" | caption name: raw cosine} (bigvl/inference/caption_scores.py)


class CaptionError(ValueError):
    """The example lacks the text the strategy needs (missing or empty field)."""


class ParameterError(ValueError):
    """A strategy parameter out of range; `field` names the constructor argument."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise CaptionError(f"{name} is {type(value).__name__}, not text")
    if not value.strip():
        raise CaptionError(f"{name} is empty")
    return value


def _caption(captions: Mapping[str, str], field: str) -> str:
    if field not in captions:
        raise CaptionError(f"caption {field!r} missing (has {sorted(captions)})")
    return _text(captions[field], f"caption {field!r}")


@dataclasses.dataclass(frozen=True)
class Alt:
    num_texts = 1

    def __call__(self, alt_text: str, captions: Mapping[str, str], rng: np.random.Generator) -> list[str]:
        return [_text(alt_text, "alt_text")]


@dataclasses.dataclass(frozen=True)
class Recap:
    field: str = "short"
    num_texts = 1

    def __call__(self, alt_text, captions, rng) -> list[str]:
        return [_caption(captions, self.field)]


@dataclasses.dataclass(frozen=True)
class Mix:
    p: float = 0.2
    field: str = "short"
    num_texts = 1

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ParameterError("p", f"{self.p} is not in [0, 1]")

    def __call__(self, alt_text, captions, rng) -> list[str]:
        if rng.random() < self.p:
            return [_caption(captions, self.field)]
        return [_text(alt_text, "alt_text")]


def _sentences(captions: Mapping[str, str], field: str) -> list[str]:
    sentences = split_sentences(_caption(captions, field))
    if not sentences:
        raise CaptionError(f"caption {field!r} has no sentence")
    return sentences


def _field_text(alt_text, captions: Mapping[str, str], field: str) -> str:
    return _text(alt_text, "alt_text") if field == ALT else _caption(captions, field)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """LaCLIP: per draw, one of `fields` uniformly ("alt" is the alt-text itself).

    A chosen text of fewer than `min_words` whitespace-separated words (an empty
    rewrite included) falls back to the alt-text (kept even when itself that short).
    A field missing from the example or not text, or an empty alt-text, raises
    CaptionError on every draw, not only when that field is chosen.
    """
    fields: tuple[str, ...] = (ALT, "rewrite_0", "rewrite_1")
    min_words: int = 2
    num_texts = 1

    def __post_init__(self):
        if not self.fields:
            raise ParameterError("fields", "needs at least one field")

    def __call__(self, alt_text, captions, rng) -> list[str]:
        alt_text = _text(alt_text, "alt_text")
        for field in self.fields:
            if field == ALT:
                continue
            if field not in captions:
                raise CaptionError(f"caption {field!r} missing (has {sorted(captions)})")
            if not isinstance(captions[field], str):
                raise CaptionError(f"caption {field!r} is {type(captions[field]).__name__}, not text")
        field = self.fields[int(rng.integers(len(self.fields)))]
        text = alt_text if field == ALT else captions[field]
        return [text if len(text.split()) >= self.min_words else alt_text]


class TokenCounter:
    """Picklable `count_tokens(text) -> int` over a sentencepiece model file, loaded on first use."""

    def __init__(self, tokenizer_path: str | os.PathLike):
        self.tokenizer_path = os.fspath(tokenizer_path)
        self._tokenizer = None

    def __call__(self, text: str) -> int:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.tokenizer_path)
        return self._tokenizer.count_tokens(text)

    def __getstate__(self):
        return {"tokenizer_path": self.tokenizer_path, "_tokenizer": None}

    def __eq__(self, other):
        return isinstance(other, TokenCounter) and other.tokenizer_path == self.tokenizer_path

    def __hash__(self):
        return hash(self.tokenizer_path)

    def __repr__(self):
        return f"TokenCounter({self.tokenizer_path!r})"


@dataclasses.dataclass(frozen=True)
class Partial:
    """CLIPS: a partial synthetic caption of random whole sentences within `max_tokens`.

    The sentences of captions[field] are visited in a random order (a permutation: no
    sentence twice); the first is always taken, each next one is appended while the
    joined text still counts ≤ max_tokens (`count_tokens`, EOS not counted), and the
    first that would overflow ends the draw. Sentences stay in the sampled order
    (`keep_order=True` restores caption order): CLIPS's released code has no data
    loader to settle this, so the sampled order is our choice. A first sentence that alone exceeds
    the budget is kept whole; the tokenizer truncates it to the context length later.
    With `with_alt`, returns [partial, alt_text]: CLIPS keeps the web caption as a
    second positive, 0.5 · (InfoNCE(image, alt) + InfoNCE(image, partial)).

    count_tokens must be picklable for grain workers: `Tokenizer.count_tokens` (the
    tokenizer pickles its model) or `TokenCounter(path)`.
    """
    max_tokens: int = 32
    field: str = "long"
    with_alt: bool = True
    keep_order: bool = False
    count_tokens: Callable[[str], int] | None = None

    def __post_init__(self):
        if self.count_tokens is None:
            raise ValueError("Partial needs count_tokens (e.g. Tokenizer(path).count_tokens)")
        if self.max_tokens < 1:
            raise ParameterError("max_tokens", f"must be ≥ 1, got {self.max_tokens}")

    @property
    def num_texts(self) -> int:
        return 2 if self.with_alt else 1

    def __call__(self, alt_text, captions, rng) -> list[str]:
        alt_text = _text(alt_text, "alt_text") if self.with_alt else None
        sentences = _sentences(captions, self.field)
        order = [int(i) for i in rng.permutation(len(sentences))]
        chosen = order[:1]
        for index in order[1:]:
            candidate = chosen + [index]
            if self.count_tokens(self._join(sentences, candidate)) > self.max_tokens:
                break
            chosen = candidate
        partial = self._join(sentences, chosen)
        return [partial, alt_text] if self.with_alt else [partial]

    def _join(self, sentences: Sequence[str], indices: list[int]) -> str:
        return join_sentences([sentences[i] for i in (sorted(indices) if self.keep_order else indices)])


@dataclasses.dataclass(frozen=True)
class Multi:
    """DreamLIP: the raw caption followed by k sentences of captions[field].

    The k sentences are drawn without replacement when the caption has ≥ k, else with
    replacement (as DreamLIP's loader does), in the drawn order. The raw caption comes
    first: `raw_field="alt"` (default) is the web alt-text, DreamLIP's "raw caption";
    `raw_field="long"` uses the whole long caption instead. Texts: k + with_raw.
    """
    k: int = 6
    field: str = "long"
    with_raw: bool = True
    raw_field: str = ALT

    def __post_init__(self):
        if self.k < 1:
            raise ParameterError("k", f"must be ≥ 1, got {self.k}")

    @property
    def num_texts(self) -> int:
        return self.k + int(self.with_raw)

    def __call__(self, alt_text, captions, rng) -> list[str]:
        raw = [_field_text(alt_text, captions, self.raw_field)] if self.with_raw else []
        sentences = _sentences(captions, self.field)
        picks = rng.choice(len(sentences), size=self.k, replace=len(sentences) < self.k)
        return raw + [sentences[int(i)] for i in picks]


@dataclasses.dataclass(frozen=True)
class LongCaption:
    """Long-CLIP's texts: [captions[field], its first sentence] (the long and the short text)."""
    field: str = "long"
    num_texts = 2

    def __call__(self, alt_text, captions, rng) -> list[str]:
        return [_caption(captions, self.field), _sentences(captions, self.field)[0]]


@dataclasses.dataclass(frozen=True)
class Dual:
    """[alt_text, captions[field]]: both texts per image, each with its own contrastive term."""
    field: str = "short"
    num_texts = 2

    def __call__(self, alt_text, captions, rng) -> list[str]:
        return [_text(alt_text, "alt_text"), _caption(captions, self.field)]


@dataclasses.dataclass(frozen=True)
class FirstSentence:
    """The first sentence of captions[field]: a short caption cut from a long one (Long-CLIP's
    short text alone, e.g. to train on short captions when only long ones were written)."""
    field: str = "long"
    num_texts = 1

    def __call__(self, alt_text, captions, rng) -> list[str]:
        return [_sentences(captions, self.field)[0]]


# name → (class, {constructor argument: key of config.data}). The keys' defaults are the
# classes' own (`strategy_config_defaults`); a new strategy is a class and one line here.
STRATEGIES: dict[str, tuple[type, dict[str, str]]] = {
    "alt": (Alt, {}),
    "recap": (Recap, {"field": "caption_field"}),
    "mix": (Mix, {"p": "mix_p", "field": "caption_field"}),
    "uniform": (Uniform, {"fields": "uniform_fields", "min_words": "uniform_min_words"}),
    "partial": (Partial, {"max_tokens": "partial_max_tokens", "field": "partial_field",
                          "with_alt": "partial_with_alt", "keep_order": "partial_keep_order"}),
    "multi": (Multi, {"k": "multi_k", "field": "multi_field", "with_raw": "multi_with_raw",
                      "raw_field": "multi_raw_field"}),
    "long": (LongCaption, {"field": "long_field"}),
    "dual": (Dual, {"field": "caption_field"}),
    "first_sentence": (FirstSentence, {"field": "first_sentence_field"}),
}


def score_fallback(texts: list[str], record: Mapping, min_score: float) -> tuple[list[str], int]:
    """(texts with low-scored captions replaced by the alt-text, how many were replaced).

    A text equal to the alt-text is kept. A text equal to one or more of the record's
    captions is replaced by the alt-text when one of those captions has a stored score
    (record["extras"][SCORE_KEY][name], a number) below `min_score`. Texts that are not
    a whole caption (a sentence of one, a partial caption) and captions without a stored
    score are kept.
    """
    scores = record.get("extras", {}).get(SCORE_KEY)
    if not isinstance(scores, Mapping):
        return texts, 0
    alt_text, out, replaced = record["alt_text"], [], 0
    for text in texts:
        low = text != alt_text and any(
            value == text and isinstance(scores.get(name), (int, float)) and scores[name] < min_score
            for name, value in record["captions"].items())
        out.append(_text(alt_text, "alt_text") if low else text)
        replaced += low
    return out, replaced


def strategy_config_defaults() -> dict:
    """{config.data key: default} for every strategy's parameters, from the classes' defaults.

    Tuples become lists (the config's type for sequences). Raises AssertionError if two
    strategies sharing a key (e.g. `caption_field`) disagree on its default.
    """
    defaults = {"caption_strategy": "mix", "min_caption_score": 0.0,  # see score_fallback
                # NegCLIP hard negatives (bigvl/data/hard_negatives.py): [] = off; else lists of
                # interchangeable words (colours, shapes, ...); edits: replace and/or swap.
                "negative_word_groups": [], "negative_edits": list(NEGATIVE_EDITS)}
    for cls, keys in STRATEGIES.values():
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        for arg, key in keys.items():
            value = list(fields[arg]) if isinstance(fields[arg], tuple) else fields[arg]
            assert defaults.setdefault(key, value) == value, f"strategies disagree on the default of data.{key}"
    return defaults


def make_caption_strategy(data_cfg, count_tokens: Callable[[str], int] | None = None):
    """Builds the strategy named by `data.caption_strategy` from its `data.*` keys (STRATEGIES).

    `partial` counts tokens with `count_tokens`, or else with a `TokenCounter` over
    `data.tokenizer`. Raises ValueError naming the key for an unknown strategy or a bad value.
    """
    name = data_cfg.caption_strategy
    if name not in STRATEGIES:
        raise ValueError(f"config key 'data.caption_strategy': {name!r} is not one of {tuple(STRATEGIES)}")
    cls, keys = STRATEGIES[name]
    kwargs = {arg: tuple(data_cfg[key]) if isinstance(data_cfg[key], list) else data_cfg[key]
              for arg, key in keys.items()}
    if cls is Partial:
        if count_tokens is None:
            if not data_cfg.get("tokenizer", ""):
                raise ValueError("config key 'data.tokenizer': caption strategy 'partial' counts tokens; set it")
            count_tokens = TokenCounter(data_cfg.tokenizer)
        kwargs["count_tokens"] = count_tokens
    try:
        return cls(**kwargs)
    except ParameterError as e:
        raise ValueError(f"config key 'data.{keys[e.field]}': {e}") from None
