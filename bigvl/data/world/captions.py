"""Short captions of the synthetic world, when a caption holds, and its hard negatives.

A short caption names every object by colour and shape, the main relation (objects 0 → 1)
and maybe the background: "a red circle to the left of a blue square with a green star on
a dotted beige background". Hard negatives edit that content (swap colours, shapes or the
relation, replace a colour) and keep only edits that are certainly false for the scene.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from bigvl.data.world.phrases import RELATION_WORDS, article, join_phrases, noun_phrase
from bigvl.data.world.scene import COLOURS, OPPOSITE_RELATION, Scene, SceneStyle, relation, relation_loosely_holds

OTHERS_JOINERS = (" with ", ", along with ")


@dataclasses.dataclass(frozen=True)
class ShortCaption:
    """The content of a short caption; `short_caption_text` words it."""
    subject: tuple[str, str]  # (colour, shape)
    relation: str | None  # where subject is relative to reference
    reference: tuple[str, str] | None
    others: tuple[tuple[str, str], ...]
    background: tuple[str, str] | None  # (colour, texture) when mentioned
    wording: int  # 0 or 1: picks relation words and joiners


def _background_phrase(colour: str, texture: str) -> str:
    return f"{article(texture)} {texture} {colour} background"


def sample_short_caption(scene: Scene, rng: np.random.Generator,
                         p_background: tuple[float, float] = SceneStyle.p_caption_background) -> ShortCaption:
    """All objects by colour and shape, the main relation (objects 0 → 1), maybe the background
    (with probability p_background[0] for one object, p_background[1] for more)."""
    objects = scene.objects
    named = [(o.colour, o.shape) for o in objects]
    others = [named[k] for k in rng.permutation(np.arange(2, len(named)))] if len(named) > 2 else []
    p_background = p_background[0] if len(objects) == 1 else p_background[1]
    return ShortCaption(
        subject=named[0],
        relation=relation(objects[0], objects[1]) if len(objects) > 1 else None,
        reference=named[1] if len(objects) > 1 else None,
        others=tuple(others),
        background=(scene.background, scene.texture) if rng.random() < p_background else None,
        wording=int(rng.integers(2)))


def short_caption_text(caption: ShortCaption) -> str:
    """E.g. 'a red circle to the left of a blue square with a green star on a dotted beige background'."""
    text = noun_phrase(*caption.subject)
    if caption.relation is not None:
        text += f" {RELATION_WORDS[caption.relation][caption.wording]} {noun_phrase(*caption.reference)}"
    if caption.others:
        text += OTHERS_JOINERS[caption.wording] + join_phrases([noun_phrase(*o) for o in caption.others])
    if caption.background is not None:
        text += " on " + _background_phrase(*caption.background)
    return text


def _named_objects(caption: ShortCaption) -> list[tuple[str, str]]:
    return [caption.subject] + ([caption.reference] if caption.reference else []) + list(caption.others)


def short_caption_holds(caption: ShortCaption, scene: Scene, strict: bool = True) -> bool:
    """Whether the caption is true of the scene: the same objects, background, relation.

    strict: the relation must be clear (`relation`); otherwise any offset in the stated
    direction counts, so `not holds(..., strict=False)` means certainly false.
    """
    named = _named_objects(caption)
    if collections.Counter(named) != collections.Counter((o.colour, o.shape) for o in scene.objects):
        return False
    if caption.background is not None and caption.background != (scene.background, scene.texture):
        return False
    if caption.relation is None:
        return True
    subjects = [o for o in scene.objects if (o.colour, o.shape) == caption.subject]
    references = [o for o in scene.objects if (o.colour, o.shape) == caption.reference]
    return any((relation(a, b) == caption.relation) if strict else relation_loosely_holds(a, b, caption.relation)
               for a in subjects for b in references if a is not b)


def hard_negatives(scene: Scene, caption: ShortCaption,
                   rng: np.random.Generator) -> list[tuple[str, str]]:
    """(text, kind) negatives of a short caption that are certainly false for the scene.

    Kinds: swap_colour (the pair's colours exchanged), swap_shape (shapes exchanged),
    swap_relation (the opposite relation), replace_colour (the subject gets a colour no
    object has). Negatives naming one object twice (never so in a scene) are left out.
    Needs a caption with a relation; returns [] otherwise.
    """
    if caption.relation is None:
        return []
    (c1, s1), (c2, s2) = caption.subject, caption.reference
    candidates = []
    if c1 != c2:
        candidates.append(("swap_colour", dataclasses.replace(caption, subject=(c2, s1), reference=(c1, s2))))
    if s1 != s2:
        candidates.append(("swap_shape", dataclasses.replace(caption, subject=(c1, s2), reference=(c2, s1))))
    candidates.append(("swap_relation",
                       dataclasses.replace(caption, relation=OPPOSITE_RELATION[caption.relation])))
    absent = [c for c in COLOURS if c not in {o.colour for o in scene.objects}]
    if absent:
        new_colour = absent[int(rng.integers(len(absent)))]
        candidates.append(("replace_colour", dataclasses.replace(caption, subject=(new_colour, s1))))
    return [(short_caption_text(negative), kind) for kind, negative in candidates
            if not short_caption_holds(negative, scene, strict=False)
            and len(set(_named_objects(negative))) == len(_named_objects(negative))]

