"""Compositional hard negatives (SugarCrepe-like): is the true caption closer than its swaps?"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from bigvl.evaluators.ranking import TIE_TOLERANCE, similarities
from bigvl.evaluators.splits import SplitCache, split_cache


def hard_negative_accuracy(image_embeds: np.ndarray, positive_embeds: np.ndarray,
                           negative_embeds: list[np.ndarray], kinds: list[list[str]]) -> dict[str, float]:
    """Fraction of (image, negative) pairs where sim(image, positive) > sim(image, negative).

    image_embeds, positive_embeds [N,E]; negative_embeds[i] [K_i,E] with kinds[i] naming each.
    Returns the overall accuracy and one per negative kind. A negative tying with the positive
    (within TIE_TOLERANCE, both scored by the same float64 product) is a miss.
    """
    wins: dict[str, list[bool]] = defaultdict(list)
    for i, (negs, names) in enumerate(zip(negative_embeds, kinds)):
        scores = similarities(np.concatenate([positive_embeds[i:i + 1], negs]), image_embeds[i:i + 1])[:, 0]
        for score, name in zip(scores[1:], names):
            win = bool(scores[0] > score + TIE_TOLERANCE)
            wins[name].append(win)
            wins["all"].append(win)
    return {("accuracy" if k == "all" else f"accuracy_{k}"): float(np.mean(v)) for k, v in wins.items()}


def evaluate(encoder, split_path: str, splits: SplitCache | None = None) -> dict[str, float]:
    """Hard-negative accuracy on a split with extras.positive / negatives / negative_kinds.

    splits: the evaluation's SplitCache (None = a fresh one).
    """
    splits = split_cache(encoder, splits)
    _, records = splits.load(split_path)
    positives = [r["extras"]["positive"] for r in records]
    negatives = [list(r["extras"]["negatives"]) for r in records]
    kinds = [list(r["extras"]["negative_kinds"]) for r in records]
    flat = encoder.encode_texts(positives + [t for negs in negatives for t in negs])
    pos_embeds, flat_negs = flat[:len(positives)], flat[len(positives):]
    ends = np.cumsum([len(n) for n in negatives])[:-1]
    return hard_negative_accuracy(splits.image_embeds(split_path), pos_embeds, np.split(flat_negs, ends), kinds)


# An `evals` entry of type "hard_negatives": the split (records with extras.positive/negatives/negative_kinds).
OPTIONS = {"split": ""}


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's accuracy, overall and per negative kind (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, splits)


def chance(entry) -> dict[str, float]:
    """A random model prefers the positive half the time."""
    return {"accuracy": 0.5}
