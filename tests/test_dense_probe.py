"""The dense probe (bigvl/evaluators/dense.py): masks, patch labels, mIoU against numpy references."""
from __future__ import annotations

import numpy as np
import pytest

from bigvl.evaluators.dense import NUM_CLASSES, dense_probe, linear_probe, mean_iou, patch_labels, scene_mask


def _confusion_miou(predicted, truth, num_classes):
    """mIoU from the confusion matrix: diag / (row sum + column sum − diag), classes with a non-empty union."""
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (truth.ravel(), predicted.ravel()), 1)
    diag = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - diag
    return np.mean(diag[union > 0] / union[union > 0])


def test_mean_iou_matches_the_confusion_matrix_reference():
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth, predicted = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
        predicted[:50] = 5  # a class only predicted counts too (IoU 0)
        assert mean_iou(predicted, truth, 6) == pytest.approx(_confusion_miou(predicted, truth, 6))
    # hand-worked: class 0 IoU 1/2 ({0,1} ∩ {0} / {0,1}), class 1 IoU 2/3 ({1,2,3} vs {2,3}) → 7/12
    assert mean_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_patch_labels_take_each_patch_majority():
    mask = np.zeros((4, 4), int)
    mask[0, 0:2] = 3  # top-left patch: 2 of 4 pixels class 3 → tie with 0, the lower class wins
    mask[0:2, 2:4] = 2  # top-right: all 2
    mask[2:4, 0:2] = [[1, 1], [1, 0]]  # bottom-left: 3 of 4 class 1
    np.testing.assert_array_equal(patch_labels(mask, 2), [0, 2, 1, 0])


def test_scene_mask_draws_shapes_at_their_place_and_size():
    scene = {"objects": [{"colour": "red", "shape": "circle", "x": 0.5, "y": 0.5, "radius": 0.25},
                         {"colour": "red", "shape": "square", "x": 0.1, "y": 0.1, "radius": 0.05}]}
    mask = scene_mask(scene, 200)
    assert (mask == 1).sum() == pytest.approx(np.pi * 50 ** 2, rel=0.01)  # circle: class 1 + SHAPES.index
    assert mask[100, 100] == 1 and mask[20, 20] > 1 and mask[0, 199] == 0


def test_linear_probe_separates_separable_patches_and_scores_chance_otherwise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, (20, 16))
    centres = rng.normal(size=(NUM_CLASSES, 8)) * 3
    features = centres[labels] + 0.1 * rng.normal(size=(20, 16, 8))
    got = dense_probe(features, labels)
    assert got["miou"] == 1.0 and got["pixel_accuracy"] == 1.0
    assert got["chance_miou"] == pytest.approx(mean_iou(np.zeros(160, int), labels[10:].ravel()))
    noise = linear_probe(rng.normal(size=(500, 8)), rng.integers(0, 2, 500), rng.normal(size=(500, 8)), 2)
    assert set(np.unique(noise)) <= {0, 1}
