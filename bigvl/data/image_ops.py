"""Image decoding, the one conversion to RGB, and the crops that keep captions true (no flips:
captions say left/right).

`rgb_image` is where every stage makes an image RGB (training data, evaluation suites,
notebook inputs): PIL's `convert("RGB")`, as open_clip's and CLIP_benchmark's pipelines do, so
that evaluation numbers compare with theirs. That means alpha (RGBA, LA, PA, a palette's
transparency) is dropped, not composited; grayscale and palette values are repeated or looked
up; CMYK is converted without an ICC profile; 16-bit and float modes (I;16, I, F) clip at 255.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

# uint8 array channels → the PIL mode Image.fromarray gives them (1 channel is squeezed to [H, W]).
ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def rgb_image(image: Image.Image | np.ndarray, where: Any = "?") -> Image.Image:
    """A PIL image of any mode, or a uint8 array [H,W] / [H,W,1] (grayscale), [H,W,3] (RGB) or
    [H,W,4] (RGBA) → an RGB PIL image (W×H): PIL's `convert("RGB")` (see the module docstring).

    Raises ValueError naming the image (`where`, e.g. its place in a batch) for an array of any
    other shape or dtype.
    """
    if isinstance(image, np.ndarray):
        array = image[:, :, None] if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[2] not in ARRAY_MODES:
            raise ValueError(f"image {where} has shape {tuple(image.shape)}: expected [H, W] or [H, W, 1] "
                             f"(grayscale), [H, W, 3] (RGB) or [H, W, 4] (RGBA)")
        if array.dtype != np.uint8:
            raise ValueError(f"image {where} has dtype {array.dtype}: expected uint8")
        image = Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array))
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes, where: Any = None) -> Image.Image:
    """Decodes JPEG/PNG/WebP/... bytes to an RGB PIL image (`rgb_image`); raises ValueError on
    corrupt bytes, naming `where` when given."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # PIL raises many types for corrupt or truncated files
        name = "" if where is None else f" {where}"
        raise ValueError(f"undecodable image{name} ({type(e).__name__}: {e})") from None
    return rgb_image(image)


def random_resized_crop(image: Image.Image, size: int, min_scale: float,
                        rng: np.random.Generator, ratio=(3 / 4, 4 / 3), box_out: list | None = None,
                        max_scale: float = 1.0) -> np.ndarray:
    """Crops a random box of area fraction [min_scale, max_scale] and aspect `ratio`, resized.

    Returns uint8 [size, size, 3]. Falls back to the whole image when no box fits. `box_out`: a list the
    crop window (x0, y0, x1, y1), as fractions of the image's width and height, is appended to (LocCa's boxes).
    """
    width, height = image.size
    area = width * height
    box = (0, 0, width, height)
    for _ in range(10):
        target = area * rng.uniform(min_scale, max_scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            box = (x, y, x + w, y + h)
            break
    if box_out is not None:
        box_out.append((box[0] / width, box[1] / height, box[2] / width, box[3] / height))
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), dtype=np.uint8)


def center_resize(image: Image.Image, size: int) -> np.ndarray:
    """Resizes the central square crop to [size, size, 3] uint8 (evaluation of bigvl-trained models)."""
    return eval_resize(image, size)


# How a model's source library turns any image into its square input (`model.image.resize`):
# crop_square: the central square, resized (bigvl); shorter_side: the shorter side resized to `size`,
# then the central size × size crop (open_clip / OpenAI CLIP: torchvision's Resize(size) +
# CenterCrop(size) on a PIL image, crop offsets rounded half to even); shorter_side_hf: the same with
# transformers' crop offsets (floored: one pixel apart where the overhang is odd); squash: the whole
# image resized to size × size (big_vision's and HF's SigLIP). Interpolation: PIL's, antialiased when
# shrinking (what torchvision and HF apply to PIL images; big_vision's tf.image.resize without
# antialias differs when shrinking).
RESIZE_RULES = ("crop_square", "shorter_side", "shorter_side_hf", "squash")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def eval_resize(image: Image.Image, size: int, rule: str = "crop_square", interpolation: str = "bilinear") -> np.ndarray:
    """An RGB PIL image → uint8 [size, size, 3] by `rule` (RESIZE_RULES) with `interpolation`
    (INTERPOLATIONS); ValueError naming the config key for an unknown one."""
    if rule not in RESIZE_RULES:
        raise ValueError(f"config key 'model.image.resize': {rule!r} is not one of {RESIZE_RULES}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"config key 'model.image.interpolation': {interpolation!r} is not one of "
                         f"{tuple(INTERPOLATIONS)}")
    resample, (width, height) = INTERPOLATIONS[interpolation], image.size
    if image.size == (size, size):
        return np.asarray(image, dtype=np.uint8)
    if rule == "squash":
        return np.asarray(image.resize((size, size), resample), dtype=np.uint8)
    if rule == "crop_square":
        side = min(width, height)
        x, y = (width - side) // 2, (height - side) // 2
        return np.asarray(image.resize((size, size), resample, box=(x, y, x + side, y + side)), dtype=np.uint8)
    # shorter_side(_hf), as torchvision's resize / center_crop (transformers': get_resize_output_image_size /
    # center_crop) compute it
    short, long = sorted((width, height))
    new_long = int(size * long / short)
    new = (size, new_long) if width <= height else (new_long, size)
    if new != image.size:
        image = image.resize(new, resample)
    if rule == "shorter_side_hf":
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
    else:
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
