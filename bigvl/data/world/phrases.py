"""Words shared by every text of the synthetic world: object names, lists, relation words."""
from __future__ import annotations

import types
from typing import Sequence

from bigvl.data.scene_geometry import article  # the world's article, shared with the data pipeline

RELATION_WORDS = types.MappingProxyType({  # (long form, short form) of each relation
    "left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
    "above": ("above", "above"), "below": ("below", "beneath"),
})


def noun_phrase(colour: str, shape: str) -> str:
    """The world's name for an object in every text: "a red circle", "an orange star"."""
    return f"{article(colour)} {colour} {shape}"


def join_phrases(phrases: Sequence[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
