"""SigLIP 2's masked prediction term (TIPS, Maninis et al. 2024, after iBOT, Zhou et al. 2022).

Half of the student's patch tokens (of the global view) are replaced by a learned mask token
(`model.image`'s `patch_mask`); at those positions the student's final patch features, through the
same prototype head as the self-distillation term, predict the teacher's per-patch features of the
unmasked image:

    loss = mean over images of [ Σ_{masked n} CE(s_n, softmax((t_n − c_p)/τt)) / #masked ]

with CE as in `bigvl.losses.self_distill` and c_p its own center of the teacher's patch logits
(iBOT's `center2`, updated from every patch row). `mask_ratio` 0.5 in SigLIP 2 ("half of the patches").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bigvl.losses.self_distill import cross_entropy, teacher_probs


def random_patch_mask(key: jax.Array, batch: int, num_patches: int, mask_ratio: float = 0.5) -> jax.Array:
    """bool [batch, num_patches]: exactly round(mask_ratio · N) True per row, at uniformly random places."""
    count = int(round(mask_ratio * num_patches))
    ranks = jnp.argsort(jax.random.uniform(key, (batch, num_patches)), axis=1).argsort(axis=1)
    return ranks < count


def masked_prediction_loss(student_patch_logits: jax.Array, teacher_patch_logits: jax.Array, mask: jax.Array,
                           center: jax.Array, student_temp: float = 0.1, teacher_temp: float = 0.04) -> jax.Array:
    """student_patch_logits [B, N, K] (masked view), teacher_patch_logits [B, N, K] (full view),
    mask bool [B, N], center [K] → float32 scalar (per image mean over its masked patches, then over images)."""
    ce = cross_entropy(student_patch_logits, teacher_probs(teacher_patch_logits, center, teacher_temp), student_temp)
    m = mask.astype(jnp.float32)
    return jnp.mean(jnp.sum(ce * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0))
