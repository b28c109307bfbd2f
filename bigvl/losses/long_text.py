"""Long-caption objectives: TULIP's cosine distillation and FIX-CLIP's two branches.

Plain jnp on global arrays (like `bigvl.losses.contrastive`); embeddings come L2-normalised;
everything computes in float32.

- `cosine_distillation_loss`: TULIP stage 1: the student text tower's embedding of a text against
  the teacher's stored embedding of the same text (for a long text: its overlapping windows
  pooled, bigvl/inference/windowed_text.py), mean of 1 − cos.
- `fix_clip_loss`: FIX-CLIP's dual-branch objective: InfoNCE(masked image, short text) and
  InfoNCE(full image, long text), averaged.
- `mask_image_patches`: the masked image of FIX-CLIP's short branch: a fixed fraction of the
  patch grid painted mid-grey (SyCoCa's `mask_pixels`), the patches drawn per example from a key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bigvl.losses.contrastive import softmax_contrastive_loss
from bigvl.models.heads import l2_normalize
from bigvl.models.sycoca import mask_pixels


def cosine_distillation_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """student [B, E] (L2-normalised), teacher [B, E] (any norm) → mean_i (1 − cos(student_i, teacher_i)).

    Raises ValueError when the widths differ (the student must share the teacher's embed_dim)."""
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(f"cosine distillation needs the teacher's embedding width: student {student.shape[-1]}, "
                         f"teacher {teacher.shape[-1]} (model.embed_dim must equal the teacher's)")
    cos = jnp.sum(l2_normalize(student.astype(jnp.float32)) * l2_normalize(teacher.astype(jnp.float32)), axis=-1)
    return jnp.mean(1.0 - cos)


def fix_clip_loss(image_embeds: jax.Array, masked_image_embeds: jax.Array, text_embeds: jax.Array,
                  logit_scale: jax.Array) -> jax.Array:
    """FIX-CLIP: 0.5 · (InfoNCE(full image, long text) + InfoNCE(masked image, short text)).

    image_embeds, masked_image_embeds [B, D]; text_embeds [B, 2, D] with slot 0 the long caption
    and slot 1 the short one (strategy `multi` with raw_field 'long', field 'short', k 1).
    Returns a float32 scalar."""
    if text_embeds.ndim != 3 or text_embeds.shape[1] != 2:
        raise ValueError(f"fix_clip_loss needs text_embeds [B, 2, D] (long, short), got {text_embeds.shape}")
    return 0.5 * (softmax_contrastive_loss(image_embeds, text_embeds[:, 0], logit_scale)
                  + softmax_contrastive_loss(masked_image_embeds, text_embeds[:, 1], logit_scale))


def mask_image_patches(images: jax.Array, keys: jax.Array, patch_size: int, ratio: float) -> jax.Array:
    """images [B, S, S, C] (uint8 or float), keys int [B] (a per-example seed, e.g. the record
    index) → the images with round(ratio · N) of their N = (S / patch_size)² patches painted
    mid-grey (`bigvl.models.sycoca.mask_pixels`: 128 for uint8, 0 for float).

    Which patches: the first round(ratio · N) of a random permutation drawn from
    fold_in(key(0), keys[b]) (deterministic per example). S must be a multiple of patch_size."""
    size = images.shape[1]
    if size % patch_size:
        raise ValueError(f"image size {size} is not a multiple of the patch size {patch_size}")
    grid = size // patch_size
    count = int(round(ratio * grid * grid))
    base = jax.random.key(0)

    def one(key_value):
        order = jax.random.permutation(jax.random.fold_in(base, key_value), grid * grid)
        return jnp.zeros(grid * grid, bool).at[order[:count]].set(True)

    return mask_pixels(images, jax.vmap(one)(keys.astype(jnp.uint32)), patch_size)
