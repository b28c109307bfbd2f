"""Zero-shot classification: class names × prompt templates → averaged text embeddings."""
from __future__ import annotations

import json

import numpy as np

from bigvl.evaluators.ranking import rank_of_true, similarities
from bigvl.evaluators.splits import SplitCache, split_cache


def class_embeddings(encoder, classnames: list[str], templates: list[str]) -> np.ndarray:
    """Mean over templates of the normalised prompt embeddings, renormalised: [C, E]."""
    prompts = [t.format(name) for name in classnames for t in templates]
    embeds = encoder.encode_texts(prompts).reshape(len(classnames), len(templates), -1)
    mean = embeds.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def zero_shot_accuracy(image_embeds: np.ndarray, labels: np.ndarray, class_embeds: np.ndarray,
                       ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracy of argmax similarity. image_embeds [N,E], labels [N] int, class_embeds [C,E].

    Ties count against the image (`rank_of_true`): a class tying with the true one ranks above it.
    A k larger than the number of classes is left out (every image would pass it); the suites
    (`bigvl.evaluators.suites.protocols`) write CLIP_benchmark's NaN instead, but a NaN here would
    go into the training metrics log and the results table.
    """
    scores = similarities(image_embeds, class_embeds)  # [N, C]
    rank = rank_of_true(scores, scores[np.arange(len(labels)), labels])
    metrics = {f"top{k}": float((rank < k).mean()) for k in ks if k <= class_embeds.shape[0]}
    # balanced_accuracy: top-1 recall of each class present in `labels`, averaged over those classes
    # (sklearn's balanced_accuracy_score), so a model that only knows the head classes scores low.
    present = np.unique(labels)
    metrics["balanced_accuracy"] = float(np.mean([(rank[labels == c] < 1).mean() for c in present]))
    return metrics


def evaluate(encoder, split_path: str, classes_path: str, splits: SplitCache | None = None) -> dict[str, float]:
    """Zero-shot top-1/top-5 and balanced (per-class mean) top-1 on a split whose records carry extras.label.

    splits: the evaluation's SplitCache (shares the split's loading and image encoding); None = a fresh one.
    """
    splits = split_cache(encoder, splits)
    with open(classes_path) as f:
        classes = json.load(f)
    _, records = splits.load(split_path)
    labels = np.array([r["extras"]["label"] for r in records])
    class_embeds = class_embeddings(encoder, classes["classnames"], classes["templates"])
    return zero_shot_accuracy(splits.image_embeds(split_path), labels, class_embeds)


# An `evals` entry of type "zeroshot": the split (records with extras.label) and a JSON {classnames, templates}.
OPTIONS = {"split": "", "classes": ""}


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's top-1/top-5 (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, entry.classes, splits)


def chance(entry) -> dict[str, float]:
    """top-k of a random model: k / classes, for the k that `zero_shot_accuracy` reports (k ≤ classes);
    balanced accuracy 1 / classes."""
    with open(entry.classes) as f:
        num_classes = len(json.load(f)["classnames"])
    return {**{f"top{k}": k / num_classes for k in (1, 5) if k <= num_classes}, "balanced_accuracy": 1 / num_classes}
