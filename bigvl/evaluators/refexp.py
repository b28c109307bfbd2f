"""Referring-expression accuracy: does the LocCa decoder's box for "a red circle" overlap the red circle?

For each region of a split whose records carry them (`bigvl.data.locca.record_regions`: extras.regions
boxes or discs; the synthetic world's retrieval split), the decoder greedily writes the four
coordinate tokens after [BOS, REF, phrase] (`bigvl.inference.locca_decoding`); a hit is a decoded box
with IoU ≥ 0.5 against the region's box (a disc's bounding square). Models with the LocCa decoder only
(SigLIP 2's recipe, model.locca.depth > 0). Metrics: accuracy, mean_iou, queries.
"""
from __future__ import annotations

import numpy as np

from bigvl.data.locca import box_iou, record_regions
from bigvl.evaluators.splits import SplitCache, split_cache
from bigvl.models.locca import locca_enabled

IOU_THRESHOLD = 0.5


def refexp_accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """predicted, truth boxes [Q, 4] (x0, y0, x1, y1) → {accuracy: share with IoU ≥ 0.5, mean_iou, queries}."""
    iou = box_iou(predicted, truth)
    return {"accuracy": float(np.mean(iou >= IOU_THRESHOLD)), "mean_iou": float(np.mean(iou)),
            "queries": float(len(iou))}


def evaluate(encoder, split_path: str, splits: SplitCache | None = None, batch_size: int = 256) -> dict[str, float]:
    """Referring-expression accuracy over every region of the split (ValueError without a LocCa decoder)."""
    if getattr(encoder, "locca", None) is None:
        raise ValueError("the refexp evaluator needs a model with SigLIP 2's LocCa decoder (model.locca.depth > 0)")
    splits = split_cache(encoder, splits)
    images, records = splits.load(split_path)
    queries = [(i, text, box) for i, record in enumerate(records) for text, box in record_regions(record)]
    if not queries:
        raise ValueError(f"refexp split {split_path}: no record has regions (extras.regions or extras.scene)")
    index = np.asarray([i for i, _, _ in queries])
    boxes = encoder.locca.decode_boxes(encoder.params, images[index], [text for _, text, _ in queries],
                                       encoder.tokenizer, batch_size)
    return refexp_accuracy(boxes, np.clip(np.asarray([box for *_, box in queries], np.float64), 0.0, 1.0))


# An `evals` entry of type "refexp" (two-tower models with model.locca.depth > 0): a split whose records carry
# regions (e.g. the synthetic world's retrieval split).
OPTIONS = {"split": ""}


def check(entry, config) -> None:
    """ValueError when the model has no LocCa decoder."""
    if entry.split and not locca_enabled(config.model):
        raise ValueError(f"evals entry of type 'refexp' (split {entry.split!r}) needs SigLIP 2's LocCa decoder: "
                         "set model.locca.depth > 0 (and loss.locca_weight)")


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's referring-expression accuracy, mean IoU and query count (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, splits, batch_size)
