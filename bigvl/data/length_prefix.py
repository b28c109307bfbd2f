"""FlexCap-style length control for captioners: the caption target carries its length as a prefix.

With `data.target_length_prefix` the decoder learns to write "N words: caption" for a caption of
N words; at decoding time the prefix for the wanted N is forced (`DecodeConfig.prefix`,
`bigvl.caption(run, images, length=N)`) and stripped from the text. So one model can recaption a
corpus short and long. Words are whitespace-separated runs, as FlexCap counts them.

One caption per image has one length; `data.target_field = "mixed_lengths"` (MixedLengths) draws a
target of varied length per example instead, so the prefix has something to control.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import numpy as np

from bigvl.data.caption_strategies import CaptionError
from bigvl.data.sentences import join_sentences, split_sentences

_PREFIX = re.compile(r"^\s*\d+ words:\s*")
MIXED_LENGTHS = "mixed_lengths"  # the data.target_field value that selects MixedLengths


def word_count(text: str) -> int:
    """Whitespace-separated words of `text`."""
    return len(text.split())


def length_prompt(words: int) -> str:
    """The prefix that asks for a caption of `words` words: "N words:"."""
    if words < 1:
        raise ValueError(f"a caption length must be >= 1 word, got {words}")
    return f"{words} words:"


def with_length_prefix(text: str) -> str:
    """text → "N words: text" (N = its word count)."""
    return f"{length_prompt(max(word_count(text), 1))} {text}"


def strip_length_prefix(text: str) -> str:
    """"N words: text" → "text" (text without such a prefix is returned as is)."""
    return _PREFIX.sub("", text, count=1)


@dataclasses.dataclass(frozen=True)
class MixedLengths:
    """A captioner target of varied length (the world's captions are ~6, ~11 or 40–80 words each).

    With probability 1/4 captions[short_field], 1/4 captions[rewrite_field], 1/2 the first k sentences
    of captions[long_field] (k uniform in 1..n, then cut back while over `max_words`, one kept): on the
    demo world about 3–64 words. Returns [text], as a caption strategy does.
    """
    short_field: str = "short"
    rewrite_field: str = "rewrite_0"
    long_field: str = "long"
    max_words: int = 64
    num_texts = 1

    def __call__(self, alt_text, captions: Mapping[str, str], rng: np.random.Generator) -> list[str]:
        draw = rng.random()
        field = self.short_field if draw < 0.25 else self.rewrite_field if draw < 0.5 else self.long_field
        text = captions.get(field)
        if not isinstance(text, str) or not text.strip():
            raise CaptionError(f"caption {field!r} missing or empty (has {sorted(captions)})")
        if field != self.long_field:
            return [text]
        sentences = split_sentences(text)
        sentences = sentences[:int(rng.integers(1, len(sentences) + 1))]
        while len(sentences) > 1 and word_count(join_sentences(sentences)) > self.max_words:
            sentences = sentences[:-1]
        return [join_sentences(sentences)]
