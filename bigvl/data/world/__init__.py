"""The built-in synthetic recaptioned world: coloured shapes, noisy alt-texts, true captions.

Each image holds 1–4 shapes (5 shapes × 6 colours, small or large) on a subtly textured
background. Per image the world writes what a recaptioned web dataset holds:

- `alt_text`: web-like and noisy — boilerplate unrelated to the image, a wrong colour or
  shape, or (most often) only one of the objects ("red circle clipart");
- `captions["short"]`: every object (colour + shape) and the main spatial relation;
- `captions["long"]`: 4–8 sentences, ". "-separated: each object's colour, size and
  position, relations between pairs, the background;
- `captions["rewrite_k"]`: LaCLIP-style paraphrases of the alt-text (same content and
  noise, other wording).

Held-out splits: single-object zero-shot classification (colour × shape classes),
retrieval, and compositional hard negatives (swapped colours / shapes / relation,
replaced colour), each drawn from its own random stream and never equal to a train scene.
Everything is deterministic given the seed.

    build_world("/tmp/world", seed=0)   # or ensure_world(...) to reuse a cached build
    render_scene(sample_scene(np.random.default_rng(0), 3), 64)  # uint8 [64, 64, 3]

Positions are fractions of the image side, x to the right and y downwards. Objects keep
away from the border so a random resized crop (scale ≥ 0.8, no flips) keeps captions true.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

# ----------------------------------------------------------------------------- vocabulary
COLOURS = types.MappingProxyType({
    "red": (214, 40, 40), "green": (40, 160, 64), "blue": (40, 84, 214),
    "yellow": (240, 204, 36), "purple": (140, 60, 184), "orange": (245, 136, 28),
})
SHAPES = ("circle", "square", "triangle", "star", "ring")
SIZE_RADII = types.MappingProxyType({"small": (0.085, 0.105), "large": (0.14, 0.165)})
BACKGROUND_COLOURS = types.MappingProxyType({
    "white": (236, 236, 236), "grey": (132, 132, 132), "beige": (224, 208, 178), "black": (34, 34, 34),
})
TEXTURES = ("plain", "striped", "dotted", "checkered")
TEXTURE_NOUNS = types.MappingProxyType({"striped": "stripes", "dotted": "dots", "checkered": "checks"})
RELATIONS = ("left of", "right of", "above", "below")
OPPOSITE_RELATION = types.MappingProxyType(
    {"left of": "right of", "right of": "left of", "above": "below", "below": "above"})

EXTENT = 1.1  # every shape fits in a disc of EXTENT × radius (also when rotated)
MIN_CENTRE = 0.2  # object centres stay in [0.2, 0.8]: a crop of scale ≥ 0.8 keeps them in view
BORDER = 0.05  # and shapes end at least this far from the border
MIN_GAP = 0.03  # between the discs of two objects
RELATION_MIN_OFFSET = 0.12  # a stated relation needs this offset on its axis...
RELATION_DOMINANCE = 1.5  # ...and this many times the offset on the other axis
TEXTURE_CONTRAST = 16.0  # grey levels
SUPERSAMPLE = 3  # anti-aliasing: sub-pixels per pixel side

CLASS_TEMPLATES = ("a photo of the {}.", "a drawing of the {}.", "the {} on a textured background.",
                   "an illustration of the {}.", "{} clipart", "a picture with the {} in it.")

SPLIT_STREAMS = types.MappingProxyType({"train": 0, "zeroshot": 1, "retrieval": 2, "hard_negatives": 3})
TRAIN_NUM_OBJECT_WEIGHTS = (0.2, 0.3, 0.3, 0.2)  # P(1, 2, 3, 4 objects) in train


# ----------------------------------------------------------------------------- scenes
@dataclasses.dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str  # "small" | "large"
    x: float  # centre, fraction of the width (0 = left edge)
    y: float  # centre, fraction of the height (0 = top edge)
    radius: float  # fraction of the image side
    rotation: float  # radians
    shade: tuple[int, int, int]  # RGB jitter added to the colour


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # objects[0], objects[1]: the main relation's pair
    background: str  # colour name
    texture: str
    texture_period: float  # fraction of the image side
    texture_phase: float  # fraction of a period


def relation(a: SceneObject, b: SceneObject) -> str | None:
    """Where `a` is relative to `b` ("left of", "right of", "above", "below"), or None when unclear.

    Clear means an offset ≥ RELATION_MIN_OFFSET on one axis and ≥ RELATION_DOMINANCE times
    the offset on the other, so the relation survives mild crops and aspect changes.
    """
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= RELATION_MIN_OFFSET and abs(dx) >= RELATION_DOMINANCE * abs(dy):
        return "left of" if dx < 0 else "right of"
    if abs(dy) >= RELATION_MIN_OFFSET and abs(dy) >= RELATION_DOMINANCE * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def _relation_loosely_holds(a: SceneObject, b: SceneObject, rel: str) -> bool:
    return {"left of": a.x < b.x, "right of": a.x > b.x, "above": a.y < b.y, "below": a.y > b.y}[rel]


def _sample_attributes(rng: np.random.Generator, num_objects: int,
                       label: int | None) -> list[tuple[str, str, str]]:
    """(colour, shape, size) per object; no two objects share both colour and shape."""
    if label is not None:
        combos = [label]
    else:
        combos = rng.choice(len(COLOURS) * len(SHAPES), size=num_objects, replace=False).tolist()
    p_large = 0.5 if num_objects <= 2 else 0.35
    colours = list(COLOURS)
    return [(colours[c // len(SHAPES)], SHAPES[c % len(SHAPES)], "large" if rng.random() < p_large else "small")
            for c in combos]


def _sample_layout(rng: np.random.Generator, radii: Sequence[float],
                   tries: int = 60) -> list[tuple[float, float]] | None:
    """Non-overlapping centres for discs of EXTENT × radii, or None when they do not fit."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        low = max(MIN_CENTRE, BORDER + EXTENT * r)
        for _ in range(tries):
            x, y = rng.uniform(low, 1.0 - low, size=2)
            if all(math.hypot(x - cx, y - cy) >= EXTENT * (r + cr) + MIN_GAP
                   for (cx, cy), cr in zip(centres, radii)):
                centres.append((float(x), float(y)))
                break
        else:
            return None
    return centres


def _put_main_pair_first(objects: list[SceneObject], rng: np.random.Generator,
                         distinct_main_pair: bool) -> list[SceneObject] | None:
    """Reorders so objects 0, 1 stand in a clear relation (and differ in colour and shape
    when `distinct_main_pair`); None when no pair qualifies."""
    if len(objects) < 2:
        return objects
    pairs = [(i, j) for i in range(len(objects)) for j in range(len(objects))
             if i != j and relation(objects[i], objects[j]) is not None
             and (not distinct_main_pair or (objects[i].colour != objects[j].colour
                                             and objects[i].shape != objects[j].shape))]
    if not pairs:
        return None
    i, j = pairs[int(rng.integers(len(pairs)))]
    return [objects[i], objects[j]] + [o for k, o in enumerate(objects) if k not in (i, j)]


def _rotation(rng: np.random.Generator, shape: str) -> float:
    if shape in ("square", "triangle"):
        return float(rng.uniform(-math.pi / 12, math.pi / 12))
    if shape == "star":
        return float(rng.uniform(-math.pi / 5, math.pi / 5))
    return 0.0


def sample_scene(rng: np.random.Generator, num_objects: int, *, label: int | None = None,
                 distinct_main_pair: bool = False) -> Scene:
    """A random scene of `num_objects` (1–4) shapes.

    `label` fixes the single object's class (colour index × len(SHAPES) + shape index);
    `distinct_main_pair` makes objects 0 and 1 differ in both colour and shape.
    """
    if not 1 <= num_objects <= 4:
        raise ValueError(f"num_objects must be in 1..4, got {num_objects}")
    if label is not None and num_objects != 1:
        raise ValueError("a class label fixes a one-object scene")
    for _ in range(200):
        attributes = _sample_attributes(rng, num_objects, label)
        radii = [float(rng.uniform(*SIZE_RADII[size])) for _, _, size in attributes]
        centres = _sample_layout(rng, radii)
        if centres is None:
            continue
        objects = [SceneObject(colour, shape, size, x, y, r, _rotation(rng, shape),
                               tuple(int(v) for v in rng.integers(-12, 13, size=3)))
                   for (colour, shape, size), (x, y), r in zip(attributes, centres, radii)]
        ordered = _put_main_pair_first(objects, rng, distinct_main_pair)
        if ordered is None:
            continue
        return Scene(objects=tuple(ordered),
                     background=list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))],
                     texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
                     texture_period=float(rng.uniform(0.1, 0.16)),
                     texture_phase=float(rng.uniform(0.0, 1.0)))
    raise RuntimeError(f"could not lay out a scene of {num_objects} objects in 200 tries")


def scene_key(scene: Scene, image_size: int) -> tuple:
    """Identity of a scene up to sub-pixel detail: equal keys mean the same-looking image."""
    objects = sorted((o.colour, o.shape, o.size, round(o.x * image_size), round(o.y * image_size))
                     for o in scene.objects)
    return (scene.background, scene.texture, tuple(objects))


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    """A msgpack/JSON-friendly description of the scene (stored in each record's extras)."""
    return {
        "background": scene.background, "texture": scene.texture,
        "objects": [{"colour": o.colour, "shape": o.shape, "size": o.size, "x": round(o.x, 4),
                     "y": round(o.y, 4), "radius": round(o.radius, 4)} for o in scene.objects],
    }


# ----------------------------------------------------------------------------- rendering
def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, rotation: float) -> np.ndarray:
    """Inside-test bool [H, W] for offsets u (right), v (down) in units of the radius."""
    if rotation:
        c, s = math.cos(rotation), math.sin(rotation)
        u, v = u * c + v * s, v * c - u * s
    rho2 = u * u + v * v
    if shape == "circle":
        return rho2 <= 1.0
    if shape == "ring":
        return (rho2 <= 1.0) & (rho2 >= 0.55 ** 2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if shape == "triangle":  # equilateral, apex up, circumradius EXTENT
        inside = np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
        for angle in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6):
            inside &= u * math.cos(angle) + v * math.sin(angle) >= -EXTENT / 2
        return inside
    if shape == "star":  # five points of radius EXTENT, inner radius 0.5, one point up
        outer, inner, half = EXTENT, 0.5, math.pi / 5
        phi = np.mod(np.arctan2(v, u) + math.pi / 2, 2 * half)
        alpha = np.minimum(phi, 2 * half - phi)  # angle from the nearest point
        edge = outer * inner * math.sin(half) / (outer * np.sin(alpha) + inner * np.sin(half - alpha))
        return rho2 <= (edge * edge).astype(np.float32)
    raise ValueError(f"unknown shape {shape!r}")


def _render_background(scene: Scene, image_size: int) -> np.ndarray:
    """float32 [S, S, 3] background colour modulated by a low-contrast texture."""
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    x, y = coords[None, :] / scene.texture_period, coords[:, None] / scene.texture_period
    phase = scene.texture_phase
    if scene.texture == "plain":
        pattern = np.zeros((image_size, image_size), np.float32)
    elif scene.texture == "striped":
        pattern = (np.mod(x + y + phase, 1.0) < 0.5).astype(np.float32)
    elif scene.texture == "dotted":
        du, dv = np.mod(x + phase, 1.0) - 0.5, np.mod(y + phase, 1.0) - 0.5
        pattern = (du * du + dv * dv < 0.3 ** 2).astype(np.float32)
    elif scene.texture == "checkered":
        pattern = np.mod(np.floor(x + phase) + np.floor(y + phase), 2).astype(np.float32)
    else:
        raise ValueError(f"unknown texture {scene.texture!r}")
    base = np.asarray(BACKGROUND_COLOURS[scene.background], np.float32)
    sign = -1.0 if base.mean() > 128 else 1.0
    return base + (sign * TEXTURE_CONTRAST * pattern)[..., None]


def _paint_object(canvas: np.ndarray, obj: SceneObject) -> None:
    """Blends `obj` into canvas float32 [S, S, 3] in place, anti-aliased by supersampling."""
    size = canvas.shape[0]
    r, cx, cy = obj.radius * size, obj.x * size, obj.y * size
    reach = EXTENT * r + 1
    x0, x1 = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), size)
    y0, y1 = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), size)
    sub_x = (np.arange((x1 - x0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE + x0
    sub_y = (np.arange((y1 - y0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE + y0
    mask = _shape_mask(obj.shape, (sub_x[None, :] - cx) / r, (sub_y[:, None] - cy) / r, obj.rotation)
    cover = mask.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).sum(axis=(1, 3), dtype=np.float32)
    cover = cover[..., None] * np.float32(1 / SUPERSAMPLE ** 2)
    colour = np.clip(np.asarray(COLOURS[obj.colour], np.float32) + np.asarray(obj.shade, np.float32), 0, 255)
    window = canvas[y0:y1, x0:x1]
    window *= 1.0 - cover
    window += cover * colour


def render_scene(scene: Scene, image_size: int = 64) -> np.ndarray:
    """The scene as an RGB image, uint8 [image_size, image_size, 3]."""
    canvas = _render_background(scene, image_size)
    for obj in scene.objects:
        _paint_object(canvas, obj)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of uint8 [H, W, 3] (4:4:4 chroma, so small coloured shapes stay crisp)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- words
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(colour: str, shape: str) -> str:
    """The world's name for an object in every text: "a red circle", "an orange star"."""
    return f"{_article(colour)} {colour} {shape}"


def _join(phrases: Sequence[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _background_phrase(colour: str, texture: str) -> str:
    return f"{_article(texture)} {texture} {colour} background"


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


# ----------------------------------------------------------------------------- short caption
RELATION_WORDS = types.MappingProxyType({
    "left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
    "above": ("above", "above"), "below": ("below", "beneath"),
})
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


def sample_short_caption(scene: Scene, rng: np.random.Generator) -> ShortCaption:
    """All objects by colour and shape, the main relation (objects 0 → 1), maybe the background."""
    objects = scene.objects
    named = [(o.colour, o.shape) for o in objects]
    others = [named[k] for k in rng.permutation(np.arange(2, len(named)))] if len(named) > 2 else []
    p_background = 0.7 if len(objects) == 1 else 0.4
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
        text += OTHERS_JOINERS[caption.wording] + _join([noun_phrase(*o) for o in caption.others])
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
    return any((relation(a, b) == caption.relation) if strict else _relation_loosely_holds(a, b, caption.relation)
               for a in subjects for b in references if a is not b)


# ----------------------------------------------------------------------------- hard negatives
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


# ----------------------------------------------------------------------------- long caption
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


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def long_caption(scene: Scene, rng: np.random.Generator, max_sentences: int = 8) -> str:
    """4–8 sentences joined by '. ': overview, each object (colour, size, position),
    clear relations between pairs (the main pair first), the background."""
    objects = scene.objects
    sentences = [_pick(rng, OVERVIEW_TEMPLATES).format(
        count=COUNT_WORDS[len(objects) - 1], background=f"{_article(scene.background)} {scene.background} background")]
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


# ----------------------------------------------------------------------------- alt-text
@dataclasses.dataclass(frozen=True)
class AltTextNoise:
    """How web-like the alt-texts are.

    p_boilerplate: text unrelated to the image ("click here for more").
    p_wrong_attribute: names objects but one with a wrong colour or shape.
    p_one_object: of the texts that name objects (right or wrong), the fraction naming
        only one object of a multi-object image; the others name 2..all objects.
    """
    p_boilerplate: float = 0.3
    p_wrong_attribute: float = 0.25
    p_one_object: float = 0.75

    def __post_init__(self):
        for name in ("p_boilerplate", "p_wrong_attribute", "p_one_object"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AltTextNoise.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p_boilerplate + self.p_wrong_attribute > 1.0:
            raise ValueError("AltTextNoise: p_boilerplate + p_wrong_attribute exceeds 1")


BOILERPLATE = (
    ("free stock image download", "download this free stock image", "a free stock photo to download",
     "free stock picture available for download"),
    ("IMG_{n}.jpg", "an image file named IMG_{n}", "photo IMG_{n} from a camera roll", "picture number {n}"),
    ("click here for more", "click here to see more", "more information when you click here",
     "click for more details"),
    ("untitled", "an untitled image", "image without a title", "untitled picture"),
    ("best wallpapers hd {n}", "high definition wallpaper collection {n}",
     "a collection of the best hd wallpapers", "hd wallpaper number {n}"),
    ("shop now and save {p}% off", "save {p} percent when you shop today", "a sale banner offering {p}% off",
     "discount of {p}% available now"),
    ("screenshot {date}", "a screenshot taken on {date}", "screen capture from {date}", "screenshot dated {date}"),
    ("home page banner", "a banner for the home page", "website header image", "banner graphic for a homepage"),
    ("photo by {name}", "a picture taken by {name}", "image credit: {name}", "photographed by {name}"),
    ("logo design template", "a template for logo design", "editable logo design", "logo template for designers"),
)
PEOPLE = ("john smith", "maria garcia", "alex chen", "sam lee", "priya patel")
WEB_TEMPLATES = ("{m}", "{m} clipart", "{m} icon png", "{m} vector illustration", "cute {m} drawing",
                 "{m} sticker", "{m} free download", "abstract {m} art", "simple {m} graphic",
                 "{m} stock illustration", "{m} emoji", "geometric {m} design")
REWRITE_TEMPLATES = ("an illustration of {m}", "clip art showing {m}", "a simple drawing of {m}",
                     "{m} drawn as an icon", "a graphic featuring {m}", "a picture that contains {m}",
                     "a vector image of {m}", "a sticker design with {m}", "artwork depicting {m}",
                     "a cartoon of {m}")
CASINGS = ("lower", "title", "filename")
CASING_WEIGHTS = (0.7, 0.15, 0.15)


@dataclasses.dataclass(frozen=True)
class AltText:
    """The content of an alt-text; `alt_text_string` and `rewrite_alt_text` word it."""
    kind: str  # "boilerplate" | "wrong_attribute" | "accurate"
    mentions: tuple[tuple[str, str], ...]  # (colour, shape) as written, maybe wrong
    boilerplate: int  # index into BOILERPLATE (kind "boilerplate")
    phrasing: int  # which phrasing (BOILERPLATE group entry or WEB_TEMPLATES)
    number: int  # fills {n}, {p}, {date}, {name}
    casing: str  # "lower" | "title" | "filename"


def _mentioned_objects(scene: Scene, rng: np.random.Generator, p_one_object: float) -> list[SceneObject]:
    objects = scene.objects
    if len(objects) == 1 or rng.random() < p_one_object:
        weights = np.array([2.0 if o.size == "large" else 1.0 for o in objects])  # the salient one
        return [objects[int(rng.choice(len(objects), p=weights / weights.sum()))]]
    count = int(rng.integers(2, len(objects) + 1))
    return [objects[k] for k in rng.permutation(len(objects))[:count]]


def _corrupt_one(mentions: list[tuple[str, str]], scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Changes the colour or the shape of one mention so that it matches no object."""
    present = {(o.colour, o.shape) for o in scene.objects}
    k = int(rng.integers(len(mentions)))
    colour, shape = mentions[k]
    if rng.random() < 0.6:
        options = [(c, shape) for c in COLOURS if (c, shape) not in present]
    else:
        options = [(colour, s) for s in SHAPES if (colour, s) not in present]
    mentions = list(mentions)
    mentions[k] = options[int(rng.integers(len(options)))]
    return mentions


def sample_alt_text(scene: Scene, rng: np.random.Generator, noise: AltTextNoise) -> AltText:
    """A noisy web alt-text for the scene, drawn with the rates of `noise`."""
    u = rng.random()
    kind = ("boilerplate" if u < noise.p_boilerplate else
            "wrong_attribute" if u < noise.p_boilerplate + noise.p_wrong_attribute else "accurate")
    mentions: list[tuple[str, str]] = []
    if kind != "boilerplate":
        mentions = [(o.colour, o.shape) for o in _mentioned_objects(scene, rng, noise.p_one_object)]
        if kind == "wrong_attribute":
            mentions = _corrupt_one(mentions, scene, rng)
    boilerplate = int(rng.integers(len(BOILERPLATE)))
    phrasing = int(rng.integers(len(BOILERPLATE[boilerplate]) if kind == "boilerplate" else len(WEB_TEMPLATES)))
    return AltText(kind=kind, mentions=tuple(mentions), boilerplate=boilerplate, phrasing=phrasing,
                   number=int(rng.integers(1000, 10000)),
                   casing=CASINGS[int(rng.choice(len(CASINGS), p=CASING_WEIGHTS))])


def _fill_boilerplate(template: str, number: int) -> str:
    date = f"20{10 + number % 15}-{1 + number % 12:02d}-{1 + number % 28:02d}"
    return template.format(n=number, p=(10, 20, 30, 50, 70)[number % 5], date=date,
                           name=PEOPLE[number % len(PEOPLE)])


def alt_text_string(alt: AltText) -> str:
    """The alt-text as a web page would carry it (clipart wording, odd casing, file names)."""
    if alt.kind == "boilerplate":
        text = _fill_boilerplate(BOILERPLATE[alt.boilerplate][alt.phrasing], alt.number)
    else:
        text = WEB_TEMPLATES[alt.phrasing].format(m=_join([f"{c} {s}" for c, s in alt.mentions]))
    if alt.casing == "title":
        return text.title()
    if alt.casing == "filename" and not text.endswith(".jpg"):
        return "-".join(text.replace(",", "").replace(":", "").split()) + (".png" if alt.number % 2 else ".jpg")
    return text


def rewrite_alt_text(alt: AltText, rng: np.random.Generator, count: int) -> list[str]:
    """`count` LaCLIP-style paraphrases of the alt-text: same content (noise included), new wording."""
    if alt.kind == "boilerplate":
        group = BOILERPLATE[alt.boilerplate]
        pool = [_fill_boilerplate(t, alt.number) for k, t in enumerate(group) if k != alt.phrasing]
    else:
        things = _join([noun_phrase(c, s) for c, s in alt.mentions])
        pool = [t.format(m=things) for t in REWRITE_TEMPLATES]
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-count // len(pool)))])
    return [pool[k] for k in order[:count]]


# ----------------------------------------------------------------------------- examples
@dataclasses.dataclass(frozen=True)
class WorldParams:
    """Everything a world depends on; the manifest stores it and `ensure_world` compares it."""
    seed: int = 0
    image_size: int = 64
    num_train: int = 20000
    num_train_shards: int = 4
    num_zeroshot: int = 600
    num_retrieval: int = 500
    num_hard_negatives: int = 500
    num_rewrites: int = 2
    vocab_size: int = 1024
    jpeg_quality: int = 95
    noise: AltTextNoise = AltTextNoise()

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be ≥ 16, got {self.image_size}")
        if self.num_train < 1 or not 1 <= self.num_train_shards <= self.num_train:
            raise ValueError(f"need 1 ≤ num_train_shards ({self.num_train_shards}) ≤ num_train ({self.num_train})")
        if min(self.num_zeroshot, self.num_retrieval, self.num_hard_negatives) < 1:
            raise ValueError("every held-out split needs at least one example")
        if self.num_rewrites < 0:
            raise ValueError(f"num_rewrites must be ≥ 0, got {self.num_rewrites}")


def world_params(**kwargs) -> WorldParams:
    """WorldParams from keyword arguments; `noise` may be an AltTextNoise or a dict."""
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(WorldParams)}
    if unknown:
        raise TypeError(f"unknown synthetic world parameters {sorted(unknown)}")
    noise = kwargs.get("noise")
    if noise is None:
        kwargs.pop("noise", None)
    elif isinstance(noise, Mapping):
        kwargs["noise"] = AltTextNoise(**noise)
    return WorldParams(**kwargs)


def class_names() -> list[str]:
    """Zero-shot class names, index = colour index × len(SHAPES) + shape index."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def example_rng(seed: int, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of one example: independent across seeds, splits and indices."""
    return np.random.default_rng([seed, SPLIT_STREAMS[split], index, attempt])


def _scene_for(split: str, index: int, rng: np.random.Generator, labels: np.ndarray | None) -> Scene:
    if split == "train":
        num_objects = 1 + int(rng.choice(len(TRAIN_NUM_OBJECT_WEIGHTS), p=TRAIN_NUM_OBJECT_WEIGHTS))
        return sample_scene(rng, num_objects)
    if split == "zeroshot":
        return sample_scene(rng, 1, label=int(labels[index]))
    return sample_scene(rng, int(rng.integers(2, 5)), distinct_main_pair=split == "hard_negatives")


def make_example(example_id: str, scene: Scene, rng: np.random.Generator,
                 params: WorldParams) -> tuple[dict[str, Any], ShortCaption]:
    """One record dict (schema of `bigvl.data.records`) with the rendered JPEG and all
    texts, plus the content of its short caption. extras: {"scene": scene_to_dict(scene)}."""
    short = sample_short_caption(scene, rng)
    alt = sample_alt_text(scene, rng, params.noise)
    captions = {"short": short_caption_text(short), "long": long_caption(scene, rng)}
    for k, text in enumerate(rewrite_alt_text(alt, rng, params.num_rewrites)):
        captions[f"rewrite_{k}"] = text
    example = {"id": example_id,
               "image": encode_jpeg(render_scene(scene, params.image_size), params.jpeg_quality),
               "alt_text": alt_text_string(alt), "captions": captions,
               "extras": {"scene": scene_to_dict(scene)}}
    return example, short


def generate_split(split: str, params: WorldParams, count: int,
                   avoid: frozenset | set = frozenset()) -> Iterator[tuple[dict[str, Any], Scene]]:
    """Yields the `count` (example, scene) pairs of a split in order; ids "{split}/{index:06d}".

    A scene whose `scene_key` is in `avoid` (the train scenes) is drawn again. Split
    extras: zeroshot {"label"}; hard_negatives {"positive", "negatives", "negative_kinds"}.
    """
    labels = None
    if split == "zeroshot":
        label_rng = np.random.default_rng([params.seed, SPLIT_STREAMS[split], 2 ** 32])
        labels = label_rng.permutation(np.arange(count) % (len(COLOURS) * len(SHAPES)))
    for index in range(count):
        for attempt in range(100):
            rng = example_rng(params.seed, split, index, attempt)
            scene = _scene_for(split, index, rng, labels)
            if scene_key(scene, params.image_size) not in avoid:
                break
        else:
            raise RuntimeError(f"{split}/{index}: every scene drawn repeats a train scene")
        example, short = make_example(f"{split}/{index:06d}", scene, rng, params)
        if split == "zeroshot":
            example["extras"]["label"] = int(labels[index])
        elif split == "hard_negatives":
            negatives = hard_negatives(scene, short, rng)
            example["extras"].update(positive=example["captions"]["short"],
                                     negatives=[text for text, _ in negatives],
                                     negative_kinds=[kind for _, kind in negatives])
        yield example, scene


# ----------------------------------------------------------------------------- writing
def _write_records(path: Path, examples: Iterator[dict[str, Any]]) -> int:
    from bigvl.data.records import encode_example, write_records
    return write_records(path, (encode_example(example) for example in examples))


def _train_shard_names(params: WorldParams) -> list[str]:
    k = params.num_train_shards
    return [f"train-{i:05d}-of-{k:05d}.array_record" for i in range(k)]


def _params_dict(params: WorldParams) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(params)))


def _write_world(directory: Path, params: WorldParams) -> dict[str, Any]:
    """Writes every file of the world into `directory`; returns the manifest (written last)."""
    from bigvl.data.tokenizer import train_tokenizer

    start = time.time()
    texts: list[str] = []
    train_keys: set = set()

    def train_examples():
        for example, scene in generate_split("train", params, params.num_train):
            texts.append(example["alt_text"])
            texts.extend(example["captions"].values())
            train_keys.add(scene_key(scene, params.image_size))
            yield example

    stream = train_examples()
    shards = _train_shard_names(params)
    bounds = np.linspace(0, params.num_train, len(shards) + 1).astype(int)
    for name, lo, hi in zip(shards, bounds[:-1], bounds[1:]):
        _write_records(directory / name, (next(stream) for _ in range(hi - lo)))
    avoid = frozenset(train_keys)
    counts = {"train": params.num_train}
    for split, count in (("zeroshot", params.num_zeroshot), ("retrieval", params.num_retrieval),
                         ("hard_negatives", params.num_hard_negatives)):
        examples = (example for example, _ in generate_split(split, params, count, avoid))
        counts[split] = _write_records(directory / f"{split}.array_record", examples)
    classes = {"classnames": class_names(), "templates": list(CLASS_TEMPLATES)}
    (directory / "zeroshot_classes.json").write_text(json.dumps(classes, indent=1))
    texts.extend(t.format(name) for name in classes["classnames"] for t in CLASS_TEMPLATES)
    train_tokenizer(texts, directory / "tokenizer", params.vocab_size)
    manifest = {
        "generator_version": GENERATOR_VERSION, "params": _params_dict(params),
        "seed": params.seed, "image_size": params.image_size, "counts": counts,
        "files": {"train": shards, "zeroshot": "zeroshot.array_record",
                  "zeroshot_classes": "zeroshot_classes.json", "retrieval": "retrieval.array_record",
                  "hard_negatives": "hard_negatives.array_record", "tokenizer": "tokenizer.model"},
        "noise": dataclasses.asdict(params.noise),
        "build_seconds": round(time.time() - start, 1),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def build_world(out_dir: str | os.PathLike, seed: int = 0, num_train: int = 20000, **kwargs) -> Path:
    """Generates the world into `out_dir` (replacing an older world there) and returns its path.

    Other keyword arguments: the fields of `WorldParams`. Files: train-XXXXX-of-YYYYY,
    zeroshot, retrieval, hard_negatives (.array_record), zeroshot_classes.json,
    tokenizer.model/.vocab, manifest.json. Built in a temporary sibling directory that
    is renamed into place, so an interrupted build never looks complete.
    """
    params = world_params(seed=seed, num_train=num_train, **kwargs)
    out = Path(out_dir).expanduser().absolute()
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"{out} is a non-empty directory without a synthetic world manifest.json; "
                              "refusing to replace it (choose a new or empty directory)")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    building.chmod(0o755)  # mkdtemp makes it private; the world is shared data
    log.info("building the synthetic world (seed %d, %d train images) in %s", params.seed, params.num_train, out)
    try:
        manifest = _write_world(building, params)
        if out.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, stale / out.name)
            os.replace(building, out)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("built the synthetic world in %s (%.1f s)", out, manifest["build_seconds"])
    return out


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The world's manifest, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out_dir).expanduser() / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_world(out_dir: str | os.PathLike, **kwargs) -> Path:
    """Returns `out_dir`, building the world there first unless its manifest already has
    these parameters (keyword arguments as for `build_world`) and all its files exist."""
    params = world_params(**kwargs)
    out = Path(out_dir).expanduser().absolute()
    manifest = read_manifest(out)
    if (manifest is not None and manifest.get("generator_version") == GENERATOR_VERSION
            and manifest.get("params") == _params_dict(params)):
        files = manifest["files"]
        names = list(files["train"]) + [v for k, v in files.items() if k != "train"]
        if all((out / name).is_file() for name in names):
            return out
    return build_world(out, **dataclasses.asdict(params) | {"noise": params.noise})
