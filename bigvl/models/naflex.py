"""NaFlex inputs for the image tower: pre-patchified pixels at any grid (h, w), right-padded to L.

A NaFlex model (`model.image.naflex`, SigLIP 2 after NaViT and FlexiViT) reads
`NaflexImages(patches uint8 [B, L, p·p·3], spatial_shapes int32 [B, 2])` instead of square
images: example b's first h_b·w_b rows are its patch grid in row-major order (bigvl/data/naflex.py
makes them), the rest padding. The tower (bigvl/models/vit.py) adds the learned G×G position grid
resized per example to (h_b, w_b) by `resize_positions`, and masks the padding in attention, the
MAP head and GAP (`valid_lengths`, `masked_mean`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PATCHES_KEY, SHAPES_KEY = "image_patches", "image_spatial_shapes"  # a NaFlex batch's keys


class NaflexImages(NamedTuple):
    """A NaFlex image batch (a pytree: it passes through jit and shardings as its two arrays).

    patches: uint8 [B, L, p·p·3] (or float, already in the model's range), each row one patch
    flattened (py, px, c); spatial_shapes: int32 [B, 2], each example's grid (h, w), h·w ≤ L.
    """
    patches: jax.Array
    spatial_shapes: jax.Array


def images_from_batch(batch: dict):
    """A batch → what the model's image tower reads: NaflexImages when it has the NaFlex keys
    (`image_patches`, `image_spatial_shapes`), else batch['image']."""
    if PATCHES_KEY in batch:
        return NaflexImages(batch[PATCHES_KEY], batch[SHAPES_KEY])
    return batch["image"]


def valid_lengths(spatial_shapes: jax.Array) -> jax.Array:
    """int [B, 2] grids (h, w) → int32 [B] = h·w, the number of valid (unpadded) patch tokens."""
    return (spatial_shapes[:, 0] * spatial_shapes[:, 1]).astype(jnp.int32)


def masked_mean(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """x [B, T, D], lengths int [B] → float32 [B, D]: the mean over each row's first lengths[b] tokens."""
    mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)
    total = jnp.einsum("btd,bt->bd", x.astype(jnp.float32), mask)
    return total / jnp.maximum(lengths, 1).astype(jnp.float32)[:, None]


def _axis_weights(index: jax.Array, size: jax.Array, grid: int) -> jax.Array:
    """Output indices float [B, L] on an axis of `size` [B, 1] outputs → weights float32 [B, L, grid]
    of the source positions: PyTorch's F.interpolate(bilinear, align_corners=False, antialias=True)
    (PIL's bilinear filter: a triangle widened by the scale when shrinking, renormalised at the edges)."""
    scale = grid / size
    support = jnp.maximum(scale, 1.0)
    center = (index + 0.5) * scale - 0.5
    source = jnp.arange(grid, dtype=jnp.float32)
    weights = jnp.maximum(1.0 - jnp.abs(source - center[..., None]) / support[..., None], 0.0)
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def resize_positions(grid: jax.Array, spatial_shapes: jax.Array, length: int) -> jax.Array:
    """The learned position grid [Gh, Gw, D] resized to each example's (h, w) and padded to `length`.

    grid [Gh, Gw, D], spatial_shapes int [B, 2] → float32 [B, length, D]: position l < h·w holds
    the bilinearly resized (anti-aliased, as transformers' Siglip2 `resize_positional_embeddings`
    and big_vision) grid at row l // w, column l % w; padding positions hold the value at (0, 0)
    (they are masked). Shapes are traced: one compiled program serves every grid of a length.
    """
    sizes = spatial_shapes.astype(jnp.float32)[:, None, :]  # [B, 1, 2]
    positions = jnp.arange(length, dtype=jnp.float32)[None, :]  # [1, L]
    rows = jnp.floor(positions / sizes[..., 1])
    cols = positions - rows * sizes[..., 1]
    valid = positions < sizes[..., 0] * sizes[..., 1]
    rows, cols = jnp.where(valid, rows, 0.0), jnp.where(valid, cols, 0.0)
    row_w = _axis_weights(rows, sizes[..., 0], grid.shape[0])
    col_w = _axis_weights(cols, sizes[..., 1], grid.shape[1])
    return jnp.einsum("blh,blw,hwd->bld", row_w, col_w, grid.astype(jnp.float32))


def dummy_naflex_images(batch: int, length: int, patch_size: int) -> NaflexImages:
    """Zero patches uint8 [batch, length, p·p·3] on a 1 × length grid: init and shape inference."""
    return NaflexImages(jnp.zeros((batch, length, patch_size * patch_size * 3), jnp.uint8),
                        jnp.tile(jnp.asarray([[1, length]], jnp.int32), (batch, 1)))


def pack(patches, spatial_shape):
    """One NaFlex image as one uint8 array: patches uint8 [L, p·p·C] and its (h, w) → uint8 [L + 1, p·p·C],
    the last row holding h and w as little-endian uint16 in its first 4 bytes (p·p·C ≥ 4). Lets an
    image travel where square images [S, S, 3] do (stacked, chunked, sharded by rows)."""
    extra = np.zeros((1, patches.shape[1]), np.uint8)
    extra[0, :4] = np.asarray(spatial_shape, "<u2").view(np.uint8)
    return np.concatenate([np.asarray(patches, np.uint8), extra])


def unpack(packed: jax.Array) -> NaflexImages:
    """uint8 [B, L + 1, p·p·C] (`pack`ed images, stacked) → NaflexImages([B, L, p·p·C], int32 [B, 2])."""
    tail = packed[:, -1, :4].astype(jnp.int32)
    return NaflexImages(packed[:, :-1], jnp.stack([tail[:, 0] + 256 * tail[:, 1], tail[:, 2] + 256 * tail[:, 3]], -1))
