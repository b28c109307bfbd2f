"""SigLIP 2's local views, made on the host: M random crops of small area, resized to the local size.

The teacher sees the global view (the example's `image`, the model's size); the student sees these
(`loss.self_distill`, bigvl/losses/self_distill.py). Crop counts and scales:
- SILC (Naeem et al. 2023, §3): two global views of area (0.4, 1.0) and eight local views of (0.05, 0.4),
  DINO's multi-crop (Caron et al. 2021: 224 px global, 96 px local crops).
- SigLIP 2 (Tschannen et al. 2025, §2.3): one global (teacher) view and eight local (student) views.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from bigvl.data.image_ops import random_resized_crop


def local_views(image: Image.Image, count: int, size: int, scale: tuple[float, float],
                rng: np.random.Generator) -> np.ndarray:
    """image (decoded) → uint8 [count, size, size, 3]: `count` crops of area fraction in `scale`
    (min, max), aspect 3/4–4/3, each resized to size × size."""
    return np.stack([random_resized_crop(image, size, scale[0], rng, max_scale=scale[1]) for _ in range(count)])


def local_views_of(loss_cfg) -> tuple[int, int, tuple[float, float]] | None:
    """(count, size, scale) of `loss.self_distill` when its weight is > 0, else None (no local views made)."""
    sd = loss_cfg.get("self_distill")
    if sd is None or not sd.weight > 0:
        return None
    return int(sd.local_crops), int(sd.local_size), (float(sd.local_scale[0]), float(sd.local_scale[1]))
