"""Long captions of the synthetic world: 4–8 sentences about every object, relations and the background."""
from __future__ import annotations

import types
from typing import Sequence

import numpy as np

from bigvl.data.world.phrases import RELATION_WORDS, article
from bigvl.data.world.scene import Scene, SceneObject, relation

TEXTURE_NOUNS = types.MappingProxyType({"striped": "stripes", "dotted": "dots", "checkered": "checks"})
OVERVIEW_TEMPLATES = ("The image shows {count} on {background}",
                      "This is a simple picture of {count} against {background}",
                      "A picture with {count} on {background}")
OBJECT_TEMPLATES = ("A {size} {colour} {shape} is {position}",
                    "There is a {size} {colour} {shape} {position}",
                    "{Position}, there is a {size} {colour} {shape}",
                    "The {colour} {shape} is {size} and sits {position}")
RELATION_TEMPLATES = ("The {a} is {rel} the {b}", "The {a} sits {rel} the {b}", "The {a} appears {rel} the {b}")
PLAIN_BACKGROUND_TEMPLATES = ("The background is plain {colour} with no pattern",
                              "Behind the shapes is a plain {colour} backdrop")
TEXTURED_BACKGROUND_TEMPLATES = ("The {colour} background has a subtle pattern of {noun}",
                                 "The background is {colour} with faint {noun}")
FILLER_SENTENCES = ("No other objects are visible", "Nothing else is in the picture")
COUNT_WORDS = ("a single shape", "two shapes", "three shapes", "four shapes")


def _position_phrase(obj: SceneObject) -> str:
    column = "left" if obj.x < 0.4 else "right" if obj.x > 0.6 else "centre"
    row = "top" if obj.y < 0.4 else "bottom" if obj.y > 0.6 else "middle"
    if (row, column) == ("middle", "centre"):
        return "in the centre"
    if row == "middle":
        return f"on the {column}"
    if column == "centre":
        return f"at the {row}"
    return f"in the {row} {column}"


def _capitalise(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def long_caption(scene: Scene, rng: np.random.Generator, max_sentences: int = 8) -> str:
    """4–8 sentences joined by '. ': overview, each object (colour, size, position),
    clear relations between pairs (the main pair first), the background."""
    objects = scene.objects
    sentences = [_pick(rng, OVERVIEW_TEMPLATES).format(
        count=COUNT_WORDS[len(objects) - 1], background=f"{article(scene.background)} {scene.background} background")]
    for obj in objects:
        position = _position_phrase(obj)
        sentences.append(_pick(rng, OBJECT_TEMPLATES).format(
            size=obj.size, colour=obj.colour, shape=obj.shape, position=position, Position=_capitalise(position)))
    if scene.texture == "plain":
        background = _pick(rng, PLAIN_BACKGROUND_TEMPLATES).format(colour=scene.background)
    else:
        background = _pick(rng, TEXTURED_BACKGROUND_TEMPLATES).format(
            colour=scene.background, noun=TEXTURE_NOUNS[scene.texture])
    pairs = [(i, j) for i in range(len(objects)) for j in range(i + 1, len(objects))
             if (i, j) != (0, 1) and relation(objects[i], objects[j]) is not None]
    pairs = ([(0, 1)] if len(objects) > 1 else []) + [pairs[k] for k in rng.permutation(len(pairs))]
    room = max_sentences - len(sentences) - 1
    for i, j in pairs[:max(room, 0)]:
        a, b = objects[i], objects[j]
        sentences.append(_pick(rng, RELATION_TEMPLATES).format(
            a=f"{a.colour} {a.shape}", b=f"{b.colour} {b.shape}", rel=RELATION_WORDS[relation(a, b)][0]))
    sentences.append(background)
    if len(sentences) < 4:
        sentences.append(_pick(rng, FILLER_SENTENCES))
    return ". ".join(sentences) + "."

