"""Rendering a scene: anti-aliased shapes on a low-contrast textured background, and JPEG bytes."""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from bigvl.data.scene_geometry import shape_mask as _shape_mask
from bigvl.data.world.scene import BACKGROUND_COLOURS, COLOURS, EXTENT, Scene, SceneObject

TEXTURE_CONTRAST = 16.0  # grey levels
SUPERSAMPLE = 3  # anti-aliasing: sub-pixels per pixel side




def _render_background(scene: Scene, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] background colour modulated by a low-contrast texture (its period a
    fraction of the short side)."""
    side = min(height, width)
    x = ((np.arange(width, dtype=np.float32) + 0.5) / side)[None, :] / scene.texture_period
    y = ((np.arange(height, dtype=np.float32) + 0.5) / side)[:, None] / scene.texture_period
    phase = scene.texture_phase
    if scene.texture == "plain":
        pattern = np.zeros((height, width), np.float32)
    elif scene.texture == "striped":
        pattern = (np.mod(x + y + phase, 1.0) < 0.5).astype(np.float32)
    elif scene.texture == "dotted":
        du, dv = np.mod(x + phase, 1.0) - 0.5, np.mod(y + phase, 1.0) - 0.5
        pattern = (du * du + dv * dv < 0.3 ** 2).astype(np.float32)
    elif scene.texture == "checkered":
        pattern = np.mod(np.floor(x + phase) + np.floor(y + phase), 2).astype(np.float32)
    else:
        raise ValueError(f"unknown texture {scene.texture!r}")
    base = np.asarray(BACKGROUND_COLOURS[scene.background], np.float32)
    sign = -1.0 if base.mean() > 128 else 1.0
    return base + (sign * TEXTURE_CONTRAST * pattern)[..., None]


def _paint_object(canvas: np.ndarray, obj: SceneObject) -> None:
    """Blends `obj` into canvas float32 [H, W, 3] in place, anti-aliased by supersampling; x and y are
    fractions of the width and height, the radius a fraction of the short side (shapes keep their form)."""
    height, width = canvas.shape[:2]
    r, cx, cy = obj.radius * min(height, width), obj.x * width, obj.y * height
    reach = EXTENT * r + 1
    x0, x1 = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), width)
    y0, y1 = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), height)
    sub_x = (np.arange((x1 - x0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE + x0
    sub_y = (np.arange((y1 - y0) * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE + y0
    mask = _shape_mask(obj.shape, (sub_x[None, :] - cx) / r, (sub_y[:, None] - cy) / r, obj.rotation)
    cover = mask.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).sum(axis=(1, 3), dtype=np.float32)
    cover = cover[..., None] * np.float32(1 / SUPERSAMPLE ** 2)
    colour = np.clip(np.asarray(COLOURS[obj.colour], np.float32) + np.asarray(obj.shade, np.float32), 0, 255)
    window = canvas[y0:y1, x0:x1]
    window *= 1.0 - cover
    window += cover * colour


def render_scene(scene: Scene, image_size: int = 64, width: int | None = None) -> np.ndarray:
    """The scene as an RGB image, uint8 [image_size, width or image_size, 3] (a wide or tall canvas
    spreads the layout, the shapes keep their form: bigvl/data/world/aspect_variant.py)."""
    canvas = _render_background(scene, image_size, width or image_size)
    for obj in scene.objects:
        _paint_object(canvas, obj)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of uint8 [H, W, 3] (4:4:4 chroma, so small coloured shapes stay crisp)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
