"""Pointing game: does the patch most similar to "a red circle" fall on the red circle?

A fine-grained (dense) alignment score for two-tower models on the synthetic world, where
every record knows its objects (``extras["scene"]``: colour, shape, centre x/y and radius
as fractions of the image side). For each image and each object whose (colour, shape) is
unique in it, the query is the world's noun phrase ("a red circle"); the hit test asks
whether the centre of the argmax patch of <text, patch embedding> lies inside the
object's disc (EXTENT × radius, the disc every shape fits in). Chance: the expected hit
rate of a uniformly random patch (the fraction of patch centres inside the disc), per
query, averaged. DreamLIP's grouping loss targets this kind of alignment.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from bigvl.evaluators.splits import load_split
from bigvl.data.world import EXTENT, noun_phrase


def patch_centres(grid: int) -> np.ndarray:
    """[grid², 2] (x, y) centres of a row-major grid of patches, as fractions of the side."""
    coords = (np.arange(grid) + 0.5) / grid
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def pointing_queries(records: list[dict]) -> list[tuple[int, str, float, float, float]]:
    """(record index, query text, x, y, radius) for every object whose colour+shape is unique in its image.

    Raises KeyError naming the record when it has no extras.scene.
    """
    queries = []
    for i, record in enumerate(records):
        scene = record.get("extras", {}).get("scene")
        if not scene:
            raise KeyError(f"pointing split: record {record.get('id')!r} has no extras.scene")
        counts = Counter((o["colour"], o["shape"]) for o in scene["objects"])
        for o in scene["objects"]:
            if counts[(o["colour"], o["shape"])] == 1:
                queries.append((i, noun_phrase(o["colour"], o["shape"]), o["x"], o["y"], o["radius"]))
    return queries


def pointing_accuracy(patch_embeds: np.ndarray, text_embeds: np.ndarray, queries) -> dict[str, float]:
    """patch_embeds [N, P, E] (P a square grid), text_embeds [Q, E] (one per query) → accuracy and chance."""
    grid = int(round(np.sqrt(patch_embeds.shape[1])))
    if grid * grid != patch_embeds.shape[1]:
        raise ValueError(f"pointing needs a square patch grid, got {patch_embeds.shape[1]} patches")
    centres = patch_centres(grid)
    hits, chance = [], []
    for (index, _, x, y, radius), text in zip(queries, text_embeds):
        inside = np.hypot(centres[:, 0] - x, centres[:, 1] - y) <= EXTENT * radius
        best = int(np.argmax(patch_embeds[index] @ text))
        hits.append(inside[best])
        chance.append(inside.mean())
    return {"accuracy": float(np.mean(hits)), "chance": float(np.mean(chance)), "queries": float(len(hits))}


def evaluate(encoder, split_path: str) -> dict[str, float]:
    """The pointing game on every unique object of a split with extras.scene (e.g. the world's retrieval split)."""
    images, records = load_split(split_path, encoder.image_size)
    queries = pointing_queries(records)
    patches = encoder.encode_patches(images)
    texts = encoder.encode_texts([text for _, text, *_ in queries])
    return pointing_accuracy(patches, texts, queries)
