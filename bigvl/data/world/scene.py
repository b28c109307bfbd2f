"""Scenes of the synthetic world: the object vocabulary, the geometry, and scene sampling.

A scene holds 1–4 coloured shapes (5 shapes × 6 colours, small or large) on a textured
background. Positions are fractions of the image side, x to the right and y downwards;
objects keep away from the border so a random resized crop (scale ≥ 0.8, no flips) keeps
captions true. No two objects of a scene share both colour and shape.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Sequence

import numpy as np

from bigvl.data.scene_geometry import EXTENT, SHAPES  # noqa: F401 (re-exported)

COLOURS = types.MappingProxyType({
    "red": (214, 40, 40), "green": (40, 160, 64), "blue": (40, 84, 214),
    "yellow": (240, 204, 36), "purple": (140, 60, 184), "orange": (245, 136, 28),
})
SIZE_RADII = types.MappingProxyType({"small": (0.085, 0.105), "large": (0.14, 0.165)})
BACKGROUND_COLOURS = types.MappingProxyType({
    "white": (236, 236, 236), "grey": (132, 132, 132), "beige": (224, 208, 178), "black": (34, 34, 34),
})
TEXTURES = ("plain", "striped", "dotted", "checkered")
RELATIONS = ("left of", "right of", "above", "below")
OPPOSITE_RELATION = types.MappingProxyType(
    {"left of": "right of", "right of": "left of", "above": "below", "below": "above"})

# SHAPES, and EXTENT (every shape fits in a disc of EXTENT × radius, also when rotated): bigvl/data/scene_geometry.py
MIN_CENTRE = 0.2  # object centres stay in [0.2, 0.8]: a crop of scale ≥ 0.8 keeps them in view
BORDER = 0.05  # and shapes end at least this far from the border
MIN_GAP = 0.03  # between the discs of two objects
RELATION_MIN_OFFSET = 0.12  # a stated relation needs this offset on its axis...
RELATION_DOMINANCE = 1.5  # ...and this many times the offset on the other axis


@dataclasses.dataclass(frozen=True)
class SceneStyle:
    """How scenes look and what their short captions name; the knobs of the world study (docs/results/world_study.md).

    shape_scale: multiplies every radius in SIZE_RADII (bigger shapes span more patches).
    max_objects: train scenes hold 1..max_objects shapes (held-out multi-object splits 2..max(2, it)).
    rotation: squares, triangles and stars are drawn slightly rotated.
    textured: backgrounds carry a low-contrast texture (else all "plain").
    p_same_colour: fraction of multi-object train scenes whose shapes all share one colour
        (then only shape tells such images apart).
    num_object_weights: relative frequency of 1, 2, 3, 4 objects in train scenes (the first
        max_objects entries are used, renormalised).
    p_caption_background: probability that a short caption names the background, for
        one-object and for multi-object scenes. A named background tells most captions of a
        batch apart by itself, so the lower it is, the more the contrastive loss needs shape.
    """
    shape_scale: float = 1.0
    max_objects: int = 4
    rotation: bool = True
    textured: bool = True
    p_same_colour: float = 0.0
    num_object_weights: tuple[float, float, float, float] = (0.2, 0.3, 0.3, 0.2)
    p_caption_background: tuple[float, float] = (0.7, 0.4)

    def __post_init__(self):
        if not 0.5 <= self.shape_scale <= 1.6:
            raise ValueError(f"SceneStyle.shape_scale must be in [0.5, 1.6], got {self.shape_scale}")
        if not 1 <= self.max_objects <= 4:
            raise ValueError(f"SceneStyle.max_objects must be in 1..4, got {self.max_objects}")
        if self.shape_scale > 1.5 and self.max_objects == 4:  # measured: 1.5 lays out, 1.6 fails within 200 tries
            raise ValueError(f"SceneStyle.shape_scale {self.shape_scale} with max_objects 4: four large shapes "
                             "do not fit in the image; use shape_scale <= 1.5 or max_objects <= 3")
        if not 0.0 <= self.p_same_colour <= 1.0:
            raise ValueError(f"SceneStyle.p_same_colour must be in [0, 1], got {self.p_same_colour}")
        weights = tuple(float(w) for w in self.num_object_weights)  # a config or JSON gives a list
        if len(weights) != 4 or min(weights) < 0 or sum(weights[:self.max_objects]) <= 0:
            raise ValueError("SceneStyle.num_object_weights must be 4 non-negative weights with a positive sum over "
                             f"the first max_objects ({self.max_objects}), got {self.num_object_weights}")
        p_background = tuple(float(p) for p in self.p_caption_background)
        if len(p_background) != 2 or not all(0.0 <= p <= 1.0 for p in p_background):
            raise ValueError("SceneStyle.p_caption_background must be two probabilities (one-object, multi-object "
                             f"scenes), got {self.p_caption_background}")
        object.__setattr__(self, "num_object_weights", weights)
        object.__setattr__(self, "p_caption_background", p_background)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One shape of a scene; it fits in the disc of EXTENT × radius around (x, y)."""
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
    """Objects on a textured background; everything `render_scene` needs to draw it."""
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


def relation_loosely_holds(a: SceneObject, b: SceneObject, rel: str) -> bool:
    """Whether `a` is `rel` of `b` by any offset at all (no clearness margin)."""
    return {"left of": a.x < b.x, "right of": a.x > b.x, "above": a.y < b.y, "below": a.y > b.y}[rel]


def _sample_attributes(rng: np.random.Generator, num_objects: int, label: int | None,
                       p_same_colour: float = 0.0) -> list[tuple[str, str, str]]:
    """(colour, shape, size) per object; no two objects share both colour and shape.

    With probability `p_same_colour` a multi-object scene takes one colour for all its shapes.
    """
    if label is not None:
        combos = [label]
    elif num_objects > 1 and p_same_colour > 0 and rng.random() < p_same_colour:
        colour = int(rng.integers(len(COLOURS)))
        combos = [colour * len(SHAPES) + int(s) for s in rng.choice(len(SHAPES), size=num_objects, replace=False)]
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


def _rotation(rng: np.random.Generator, shape: str, rotate: bool) -> float:
    if not rotate:
        return 0.0
    if shape in ("square", "triangle"):
        return float(rng.uniform(-math.pi / 12, math.pi / 12))
    if shape == "star":
        return float(rng.uniform(-math.pi / 5, math.pi / 5))
    return 0.0


def sample_scene(rng: np.random.Generator, num_objects: int, *, label: int | None = None,
                 distinct_main_pair: bool = False, style: SceneStyle = SceneStyle()) -> Scene:
    """A random scene of `num_objects` (1–4) shapes drawn in `style`.

    `label` fixes the single object's class (colour index × len(SHAPES) + shape index);
    `distinct_main_pair` makes objects 0 and 1 differ in both colour and shape (and
    ignores `style.p_same_colour`).
    """
    if not 1 <= num_objects <= 4:
        raise ValueError(f"num_objects must be in 1..4, got {num_objects}")
    if label is not None and num_objects != 1:
        raise ValueError("a class label fixes a one-object scene")
    for _ in range(200):
        attributes = _sample_attributes(rng, num_objects, label,
                                        0.0 if distinct_main_pair else style.p_same_colour)
        radii = [style.shape_scale * float(rng.uniform(*SIZE_RADII[size])) for _, _, size in attributes]
        centres = _sample_layout(rng, radii)
        if centres is None:
            continue
        objects = [SceneObject(colour, shape, size, x, y, r, _rotation(rng, shape, style.rotation),
                               tuple(int(v) for v in rng.integers(-12, 13, size=3)))
                   for (colour, shape, size), (x, y), r in zip(attributes, centres, radii)]
        ordered = _put_main_pair_first(objects, rng, distinct_main_pair)
        if ordered is None:
            continue
        background = list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]  # drawn either way: the same stream
        return Scene(objects=tuple(ordered), background=background,
                     texture=texture if style.textured else "plain",
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

