"""FlexCap-style length control for captioners: the caption target carries its length as a prefix.

With `data.target_length_prefix` the decoder learns to write "N words: caption" for a caption of
N words; at decoding time the prefix for the wanted N is forced (`DecodeConfig.prefix`,
`bigvl.caption(run, images, length=N)`) and stripped from the text. So one model can recaption a
corpus short and long. Words are whitespace-separated runs, as FlexCap counts them.
"""
from __future__ import annotations

import re

_PREFIX = re.compile(r"^\s*\d+ words:\s*")


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
