"""Preparing user images for a model: any size in, the model's square size out.

Grayscale images ([H,W] or [H,W,1]) get their value in all three channels and RGBA ones
([H,W,4]) lose their alpha channel: `bigvl.data.image_ops.rgb_image`, PIL's `convert("RGB")`,
the same conversion as the training data's and the evaluation suites' images get.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from bigvl.data.image_ops import eval_resize, rgb_image


def prepare_images(images: Iterable[np.ndarray] | np.ndarray, size: int, resize: str = "crop_square",
                   interpolation: str = "bilinear") -> np.ndarray:
    """uint8 images [N, H_i, W_i, C_i] (a list or an array; any sizes) → uint8 [N, size, size, 3].

    C_i = 3 (RGB), 4 (RGBA, alpha dropped) or 1 / absent (grayscale [H_i, W_i], repeated to RGB):
    `rgb_image`, whose ValueError names an image (its place in `images`) of any other shape.
    Each image is then squared by `resize` / `interpolation` (`eval_resize`; an Encoder's own: its
    model's source library's rule), so notebook inputs match what the model saw in evaluation.
    """
    prepared = [eval_resize(rgb_image(np.asarray(image, np.uint8), where=i), size, resize, interpolation)
                for i, image in enumerate(images)]
    if not prepared:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(prepared)
