"""Which text a training example uses: the caption strategies of the recaption papers.

A strategy maps (alt_text, captions, rng) to the list of texts for one example; the
rng comes from grain, seeded by (seed, position in the stream), so the same seed and
step give the same text and a restored iterator draws the same texts again.

- `alt`: the web alt-text only (CLIP/ALIGN baseline).
- `recap`: a synthetic caption only (`caption_field`).
- `mix(p)`: the synthetic caption with probability p, else the alt-text
  (Recap-DataComp-1B / CLIPS use p = 0.2; VeCLIP mixes at random).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np


class CaptionError(ValueError):
    """The example lacks the text the strategy needs (missing or empty field)."""


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

    def __call__(self, alt_text, captions, rng) -> list[str]:
        if rng.random() < self.p:
            return [_caption(captions, self.field)]
        return [_text(alt_text, "alt_text")]


def make_caption_strategy(data_cfg):
    """Builds the strategy named by `data.caption_strategy` with its parameters."""
    name = data_cfg.caption_strategy
    if name == "alt":
        return Alt()
    if name == "recap":
        return Recap(field=data_cfg.caption_field)
    if name == "mix":
        return Mix(p=data_cfg.mix_p, field=data_cfg.caption_field)
    raise ValueError(f"data.caption_strategy {name!r} is not a known strategy")
