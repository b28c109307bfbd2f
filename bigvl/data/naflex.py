"""NaFlex patching: an image at its own aspect ratio as at most L patches, padded to L.

A NaFlex model (`model.image.naflex`) sees an image as a patch grid (h, w) chosen for its
aspect ratio under a budget of L = `max_patches` tokens, the image resized to (h·p, w·p)
(PIL bilinear, antialiased when shrinking, as transformers' Siglip2ImageProcessorPil), cut
into patches in row-major order over the grid, each flattened (py, px, c), and right-padded
with zero rows to L. The model masks positions ≥ h·w (bigvl/models/naflex.py).

Two grid rules (`model.image.naflex_grid`, GRID_RULES):
- "closest_aspect" (bigvl's default, for models trained here): among the grids that fill the
  budget (h·w ≤ L and neither side can grow by one: h = L // w and w = L // h), the one whose
  aspect w/h is closest to the image's W/H in log ratio; ties → more patches, then more rows.
- "siglip2" (imported SigLIP 2 NaFlex checkpoints): transformers'
  `get_image_size_for_max_num_patches` — the largest uniform scale of the image whose sides,
  each rounded *up* to a multiple of p (at least p), give h·w ≤ L (a binary search on the
  scale, eps 1e-5), which is what those checkpoints were trained and evaluated with.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from bigvl.data.image_ops import INTERPOLATIONS, rgb_image

GRID_RULES = ("closest_aspect", "siglip2")


def _aspect_key(h: int, w: int, log_aspect: float) -> tuple:
    return (abs(math.log(w / h) - log_aspect), -h * w, -h)


def closest_aspect_grid(height: int, width: int, max_patches: int) -> tuple[int, int]:
    """The budget-filling grid (h, w) whose aspect is closest to height × width (module docstring)."""
    log_aspect = math.log(width / height)
    grids = ((h, max_patches // h) for h in range(1, max_patches + 1))
    return min(((h, w) for h, w in grids if max_patches // w == h), key=lambda g: _aspect_key(*g, log_aspect))


def siglip2_grid(height: int, width: int, patch_size: int, max_patches: int, eps: float = 1e-5) -> tuple[int, int]:
    """transformers' Siglip2 rule (get_image_size_for_max_num_patches, same binary search) → (h, w) in patches."""
    def side(scale: float, size: int) -> int:
        return max(patch_size, math.ceil(size * scale / patch_size) * patch_size)

    lo, hi = eps / 10, 100.0
    while hi - lo >= eps:
        scale = (lo + hi) / 2
        if (side(scale, height) / patch_size) * (side(scale, width) / patch_size) <= max_patches:
            lo = scale
        else:
            hi = scale
    return side(lo, height) // patch_size, side(lo, width) // patch_size


def choose_grid(height: int, width: int, patch_size: int, max_patches: int, rule: str = "closest_aspect") -> tuple[int, int]:
    """An image's height × width (pixels) → its patch grid (h, w), h·w ≤ max_patches, by `rule` (GRID_RULES).

    Raises ValueError naming the config key for an unknown rule and for a non-positive size or budget.
    """
    if rule not in GRID_RULES:
        raise ValueError(f"config key 'model.image.naflex_grid': {rule!r} is not one of {GRID_RULES}")
    if max_patches < 1 or patch_size < 1:
        raise ValueError(f"NaFlex max_patches ({max_patches}) and patch size ({patch_size}) must be ≥ 1")
    if height < 1 or width < 1:
        raise ValueError(f"NaFlex image size {height}x{width} must be at least 1x1")
    if rule == "siglip2":
        return siglip2_grid(height, width, patch_size, max_patches)
    return closest_aspect_grid(height, width, max_patches)


def naflex_image(image: np.ndarray | Image.Image, patch_size: int, max_patches: int,
                 rule: str = "closest_aspect", where: object = "?", interpolation: str = "bilinear"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [H,W,3] (or any PIL image / array `image_ops.rgb_image` takes) → (patches, spatial_shape).

    patches: uint8 [max_patches, patch_size·patch_size·3], the image resized (PIL bilinear) to
    (h·p, w·p) for the grid (h, w) = `choose_grid(H, W, p, max_patches, rule)`, its patches in
    row-major order over the grid, each flattened (py, px, c), then zero rows from h·w on;
    spatial_shape: int32 [2] = (h, w). `where` names the image in errors; `interpolation`: one of
    image_ops.INTERPOLATIONS (model.image.interpolation), PIL's, antialiased when shrinking.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"config key 'model.image.interpolation': {interpolation!r} is not one of "
                         f"{tuple(INTERPOLATIONS)}")
    pil = rgb_image(image, where)
    width, height = pil.size
    h, w = choose_grid(height, width, patch_size, max_patches, rule)
    p = patch_size
    if pil.size != (w * p, h * p):
        pil = pil.resize((w * p, h * p), INTERPOLATIONS[interpolation])
    pixels = np.asarray(pil, dtype=np.uint8)
    patches = np.zeros((max_patches, p * p * 3), np.uint8)
    patches[:h * w] = pixels.reshape(h, p, w, p, 3).transpose(0, 2, 1, 3, 4).reshape(h * w, p * p * 3)
    return patches, np.asarray((h, w), np.int32)


def naflex_batch(images, patch_size: int, max_patches: int, rule: str = "closest_aspect") -> dict[str, np.ndarray]:
    """A sequence of images → {'image_patches': uint8 [B, L, p·p·3], 'image_spatial_shapes': int32 [B, 2]}
    (`naflex_image` of each, L = max_patches)."""
    out = [naflex_image(image, patch_size, max_patches, rule, where=i) for i, image in enumerate(images)]
    return {"image_patches": np.stack([o[0] for o in out]), "image_spatial_shapes": np.stack([o[1] for o in out])}
