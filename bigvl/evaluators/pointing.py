"""Pointing game: does the patch most similar to "a red circle" fall on the red circle?

A fine-grained (dense) alignment score for two-tower models on any split whose records say
where their objects are, in the generic per-record field

    extras["regions"] = [{"text": "a red circle", "x": 0.31, "y": 0.62, "radius": 0.12}, ...]

one entry per query: the text to point with and the disc the object lies in (centre x to
the right, y downwards, and radius, all fractions of the image side). The synthetic world
writes it into its retrieval split (one region per object whose colour+shape is unique in
the image, the disc every shape fits in). For each region the hit test asks whether the
centre of the argmax patch of <text, patch embedding> lies inside the disc; ties count
against the query (the evaluators' rule, `bigvl.evaluators.ranking.rank_of_true`): a hit
needs the best patch inside the disc to beat every patch outside it. Chance: the
expected hit rate of a uniformly random patch (the fraction of patch centres inside the
disc), per query, averaged. DreamLIP's grouping loss targets this kind of alignment.
"""
from __future__ import annotations

import numpy as np

from bigvl.evaluators.ranking import TIE_TOLERANCE, similarities
from bigvl.evaluators.splits import SplitCache, split_cache

REGION_FIELDS = ("text", "x", "y", "radius")


def patch_centres(grid: int) -> np.ndarray:
    """[grid², 2] (x, y) centres of a row-major grid of patches, as fractions of the side."""
    coords = (np.arange(grid) + 0.5) / grid
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def patch_grid(num_patches: int) -> int:
    """The side g of a square grid of `num_patches` = g² patches; ValueError for a non-square count."""
    grid = int(round(np.sqrt(num_patches)))
    if grid * grid != num_patches:
        raise ValueError(f"pointing needs a square patch grid, got {num_patches} patches")
    return grid


def patch_similarity_maps(patch_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
    """patch_embeds [N,P,E] (P = g², row-major), text_embeds [N,E] (one per image) → float64 [N,g,g].

    Map n holds <patch, text n> for every patch of image n, row y / column x of the grid: the
    scores the pointing game takes the argmax of (cosines for L2-normalised embeddings).
    """
    grid = patch_grid(patch_embeds.shape[1])
    if text_embeds.shape[0] != patch_embeds.shape[0]:
        raise ValueError(f"{patch_embeds.shape[0]} images but {text_embeds.shape[0]} texts")
    maps = [similarities(patches, text[None])[:, 0] for patches, text in zip(patch_embeds, text_embeds)]
    return np.stack(maps).reshape(-1, grid, grid)


def pointing_queries(records: list[dict]) -> list[tuple[int, str, float, float, float]]:
    """(record index, text, x, y, radius) for every region of every record, in order.

    Raises KeyError naming the record when it has no extras.regions (missing or empty),
    ValueError naming the record when a region lacks a field of REGION_FIELDS.
    """
    queries = []
    for i, record in enumerate(records):
        regions = record.get("extras", {}).get("regions")
        if not regions:
            raise KeyError(f"pointing split: record {record.get('id')!r} has no extras.regions "
                           f"(a list of {{'text', 'x', 'y', 'radius'}} discs to point at)")
        for region in regions:
            missing = [name for name in REGION_FIELDS if name not in region]
            if missing:
                raise ValueError(f"pointing split: record {record.get('id')!r} has a region without {missing}")
            queries.append((i, str(region["text"]), float(region["x"]), float(region["y"]),
                            float(region["radius"])))
    return queries


def pointing_accuracy(patch_embeds: np.ndarray, text_embeds: np.ndarray, queries) -> dict[str, float]:
    """patch_embeds [N, P, E] (P a square grid), text_embeds [Q, E] (one per query) → accuracy and chance.

    A hit: the centre of the patch with the largest <patch, text> lies inside the query's
    disc (distance to (x, y) ≤ radius), and no patch outside ties with it: the best score
    inside beats the best outside by more than TIE_TOLERANCE (a disc holding every patch
    centre is always hit, one holding none never).
    """
    centres = patch_centres(patch_grid(patch_embeds.shape[1]))
    hits, chance = [], []
    for (index, _, x, y, radius), text in zip(queries, text_embeds):
        inside = np.hypot(centres[:, 0] - x, centres[:, 1] - y) <= radius
        scores = patch_similarity_maps(patch_embeds[index][None], text[None]).ravel()  # [P], row-major
        best_inside = scores[inside].max(initial=-np.inf)
        best_outside = scores[~inside].max(initial=-np.inf)
        hits.append(bool(inside.any() and best_inside > best_outside + TIE_TOLERANCE))
        chance.append(inside.mean())
    return {"accuracy": float(np.mean(hits)), "chance": float(np.mean(chance)), "queries": float(len(hits))}


def evaluate(encoder, split_path: str, splits: SplitCache | None = None) -> dict[str, float]:
    """The pointing game on every region of a split whose records carry extras.regions."""
    splits = split_cache(encoder, splits)
    queries = pointing_queries(splits.load(split_path)[1])
    texts = encoder.encode_texts([text for _, text, *_ in queries])
    return pointing_accuracy(splits.patch_embeds(split_path), texts, queries)


# An `evals` entry of type "pointing" (two-tower models): a split whose records carry extras.regions
# (e.g. the synthetic world's retrieval split). It measures its own chance ("chance").
OPTIONS = {"split": ""}


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's pointing accuracy, chance and query count (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, splits)
