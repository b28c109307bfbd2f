"""Preparing user images for a model: any size in, the model's square size out.

Grayscale images ([H,W] or [H,W,1]) get their value in all three channels and RGBA ones
([H,W,4]) lose their alpha channel, as PIL's `convert("RGB")` does and as the training
data's decoder (`bigvl.data.image_ops.decode_image`) does with grayscale and RGBA files.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image

from bigvl.data.image_ops import center_resize


def to_rgb(image: np.ndarray, index: int = 0) -> np.ndarray:
    """uint8 [H,W] / [H,W,1] (grayscale), [H,W,3] (RGB) or [H,W,4] (RGBA) → [H,W,3].

    Grayscale: the value repeated in R, G and B; RGBA: alpha dropped (not composited).
    Any other shape raises ValueError naming the image (`index`, its place in the batch) and its shape.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image {index} has shape {tuple(image.shape)}: expected [H, W] or [H, W, 1] "
                         f"(grayscale), [H, W, 3] (RGB) or [H, W, 4] (RGBA)")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def prepare_images(images: Iterable[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """uint8 images [N, H_i, W_i, C_i] (a list or an array; any sizes) → uint8 [N, size, size, 3].

    C_i = 3 (RGB), 4 (RGBA, alpha dropped) or 1 / absent (grayscale [H_i, W_i], repeated to RGB):
    `to_rgb`, whose ValueError names an image of any other shape. Each image is then
    centre-cropped to a square and resized (`center_resize`, as the evaluation splits are),
    so notebook inputs match what the model saw in evaluation.
    """
    prepared = [center_resize(Image.fromarray(np.ascontiguousarray(to_rgb(np.asarray(image, np.uint8), i))), size)
                for i, image in enumerate(images)]
    if not prepared:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(prepared)
