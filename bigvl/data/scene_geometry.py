"""The geometry of the synthetic world's shapes, outside the world package so that the data pipeline
(LocCa's regions, bigvl/data/locca.py) and the evaluators (the dense probe) can read a record's
`extras.scene` without importing the world generator (tests/test_import_order.py).

`SHAPES` and `EXTENT` are the world's (bigvl/data/world/scene.py re-exports them); `shape_mask` is
the inside test `render_scene` draws with.
"""
from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "ring")
EXTENT = 1.1  # every shape fits in a disc of EXTENT × radius (also when rotated)

def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, rotation: float) -> np.ndarray:
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


def article(word: str) -> str:
    """"a" or "an" before `word` (the world's phrases, bigvl/data/world/phrases.py)."""
    return "an" if word[0] in "aeiou" else "a"


def scene_regions(scene: dict) -> list[tuple[str, tuple[float, float, float, float]]]:
    """A scene dict (`scene_to_dict`) → (noun phrase, box x0 y0 x1 y1) of each object whose colour + shape
    is unique in the scene (the pointing game's rule; `pointing_regions`), the box bounding its disc of
    EXTENT × radius, fractions of the image side."""
    objects = scene.get("objects") or []
    counts: dict = {}
    for o in objects:
        counts[(o["colour"], o["shape"])] = counts.get((o["colour"], o["shape"]), 0) + 1
    regions = []
    for o in objects:
        if counts[(o["colour"], o["shape"])] == 1:
            r = EXTENT * o["radius"]
            regions.append((f"{article(o['colour'])} {o['colour']} {o['shape']}",
                            (o["x"] - r, o["y"] - r, o["x"] + r, o["y"] + r)))
    return regions
