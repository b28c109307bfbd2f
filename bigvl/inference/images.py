"""Preparing user images for a model: any size in, the model's square size out."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

from bigvl.data.image_ops import center_resize


def prepare_images(images: Iterable[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """uint8 images [N, H_i, W_i, 3] (a list or an array; any sizes) → uint8 [N, size, size, 3].

    Each image is centre-cropped to a square and resized (`center_resize`, as the
    evaluation splits are), so notebook inputs match what the model saw in evaluation.
    """
    prepared = [center_resize(Image.fromarray(np.asarray(image, np.uint8)), size) for image in images]
    if not prepared:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(prepared)
