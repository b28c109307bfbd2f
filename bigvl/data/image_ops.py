"""Image decoding and the crops that keep captions true (no flips: captions say left/right)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def decode_image(data: bytes) -> Image.Image:
    """Decodes JPEG/PNG bytes to an RGB PIL image; raises ValueError on corrupt bytes."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # PIL raises many types for corrupt or truncated files
        raise ValueError(f"undecodable image ({type(e).__name__}: {e})") from None
    return image.convert("RGB") if image.mode != "RGB" else image


def random_resized_crop(image: Image.Image, size: int, min_scale: float,
                        rng: np.random.Generator, ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """Crops a random box of area fraction [min_scale, 1] and aspect `ratio`, resized.

    Returns uint8 [size, size, 3]. Falls back to the whole image when no box fits.
    """
    width, height = image.size
    area = width * height
    box = (0, 0, width, height)
    for _ in range(10):
        target = area * rng.uniform(min_scale, 1.0)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            box = (x, y, x + w, y + h)
            break
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), dtype=np.uint8)


def center_resize(image: Image.Image, size: int) -> np.ndarray:
    """Resizes the central square crop to [size, size, 3] uint8 (evaluation)."""
    width, height = image.size
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    box = (x, y, x + side, y + side)
    if image.size == (size, size):
        return np.asarray(image, dtype=np.uint8)
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), dtype=np.uint8)
