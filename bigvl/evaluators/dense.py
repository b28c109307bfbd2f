"""Dense probe: a linear probe of the frozen patch features onto per-patch object classes, mIoU.

SigLIP 2's claim is better dense features; this is the synthetic world's version of its
segmentation probe. Each record of the split is rendered as a per-pixel class mask from its
`extras.scene` (0 = background, 1 + k = the k-th shape of `bigvl.data.world.scene.SHAPES`; later
objects paint over earlier ones, as `render_scene` draws them; exact for unrotated worlds such as
the demo's, whose scene dicts carry no rotation). The masks are DOWNSAMPLED to the patch grid: each
patch takes the majority class of its pixels. The probe is a ridge regression (λ = 1e-3 · trace /
dim) of the one-hot patch class on [patch embedding, 1], fitted on the first half of the records and
scored on the second: the argmax class per patch, then the mean over classes of IoU = |pred ∩
true| / |pred ∪ true| (classes absent from both are left out). Metrics: miou, pixel_accuracy
(per patch), chance_miou (every patch background).
"""
from __future__ import annotations

import numpy as np

from bigvl.data.scene_geometry import SHAPES, shape_mask
from bigvl.evaluators.pointing import patch_grid
from bigvl.evaluators.splits import SplitCache, split_cache

NUM_CLASSES = 1 + len(SHAPES)


def scene_mask(scene: dict, size: int) -> np.ndarray:
    """A scene dict (`scene_to_dict`) → int32 [size, size] classes at the pixel centres (module docstring)."""
    mask = np.zeros((size, size), np.int32)
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    for obj in scene["objects"]:
        r = float(obj["radius"])
        inside = shape_mask(obj["shape"], (coords[None, :] - obj["x"]) / r, (coords[:, None] - obj["y"]) / r, 0.0)
        mask[inside] = 1 + SHAPES.index(obj["shape"])
    return mask


def patch_labels(mask: np.ndarray, grid: int) -> np.ndarray:
    """int [S, S] pixel classes → int [grid²] (row-major) majority class of each patch (ties: the lower class)."""
    size = mask.shape[0]
    if size % grid:
        raise ValueError(f"mask side {size} is not a multiple of the patch grid {grid}")
    cells = mask.reshape(grid, size // grid, grid, size // grid).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    counts = np.stack([(cells == c).sum(axis=1) for c in range(NUM_CLASSES)], axis=1)
    return np.argmax(counts, axis=1)


def mean_iou(predicted: np.ndarray, truth: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Integer class arrays of one shape → the mean over classes present in either of |P ∩ T| / |P ∪ T|."""
    ious = []
    for c in range(num_classes):
        p, t = predicted == c, truth == c
        union = np.sum(p | t)
        if union:
            ious.append(np.sum(p & t) / union)
    return float(np.mean(ious))


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int = NUM_CLASSES
                 ) -> np.ndarray:
    """Ridge regression of one-hot train_y [n] on [train_x, 1] [n, E+1] → argmax classes of test_x [m]."""
    def design(x):
        return np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], axis=1)
    a = design(train_x)
    gram = a.T @ a
    gram += 1e-3 * np.trace(gram) / len(gram) * np.eye(len(gram))
    weights = np.linalg.solve(gram, a.T @ np.eye(num_classes)[train_y])
    return np.argmax(design(test_x) @ weights, axis=1)


def dense_probe(patch_embeds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """patch_embeds [N, P, E], labels int [N, P] → the probe's mIoU and accuracy on the second half of the images."""
    n = len(patch_embeds) // 2
    if n < 1:
        raise ValueError(f"the dense probe needs at least 2 images, got {len(patch_embeds)}")
    e = patch_embeds.shape[-1]
    predicted = linear_probe(patch_embeds[:n].reshape(-1, e), labels[:n].reshape(-1), patch_embeds[n:].reshape(-1, e))
    truth = labels[n:].reshape(-1)
    return {"miou": mean_iou(predicted, truth), "pixel_accuracy": float(np.mean(predicted == truth)),
            "chance_miou": mean_iou(np.zeros_like(truth), truth)}


def evaluate(encoder, split_path: str, splits: SplitCache | None = None) -> dict[str, float]:
    """The dense probe on a split whose records carry extras.scene (KeyError naming the record otherwise)."""
    splits = split_cache(encoder, splits)
    images, records = splits.load(split_path)
    patches = splits.patch_embeds(split_path)
    grid = patch_grid(patches.shape[1])
    size = grid * max(1, -(-images.shape[1] // grid))
    labels = []
    for record in records:
        scene = record.get("extras", {}).get("scene")
        if not scene:
            raise KeyError(f"dense split: record {record.get('id')!r} has no extras.scene to render its mask from")
        labels.append(patch_labels(scene_mask(scene, size), grid))
    return dense_probe(patches, np.stack(labels))


# An `evals` entry of type "dense" (two-tower models): a split whose records carry extras.scene (the world's).
OPTIONS = {"split": ""}


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's dense-probe mIoU, patch accuracy and chance mIoU (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, splits)
