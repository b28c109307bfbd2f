"""SigLIP 2's self-distillation term (SILC, Naeem et al. 2023; TIPS, Maninis et al. 2024): local views vs the EMA teacher.

The student sees M local crops of an image, the teacher (an EMA of the student, `bigvl.train.teacher`)
the global view; both go through the prototype head (`bigvl.models.distill_heads`, DINO's) to
logits over K prototypes. With teacher centering c [K] and temperatures τs (student), τt (teacher):

    p_t = softmax((t − c) / τt)          teacher, centred and sharpened, no gradient
    log p_s = log_softmax(s / τs)        student, one per local crop
    loss = mean over images and crops of  −Σ_k p_t[k] · log p_s[k]

and after the step c ← m·c + (1 − m)·mean over the batch of t (DINO's `update_center`, m = 0.9).
DINO's defaults (Caron et al. 2021, §3.1 and its main_dino.py): τs = 0.1, τt = 0.04 (warmed up
to 0.07 in DINO; SILC keeps it fixed), m = 0.9.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def teacher_probs(teacher_logits: jax.Array, center: jax.Array, teacher_temp: float) -> jax.Array:
    """teacher_logits [..., K], center [K] → softmax((t − c)/τt) float32 [..., K], gradient stopped."""
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32) - center.astype(jnp.float32))
    return jax.nn.softmax(t / teacher_temp, axis=-1)


def cross_entropy(student_logits: jax.Array, probs: jax.Array, student_temp: float) -> jax.Array:
    """student_logits [..., K], target probs [..., K] → −Σ_k p·log_softmax(s/τs) float32 [...]."""
    log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    return -jnp.sum(probs * log_p, axis=-1)


def self_distill_loss(local_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array,
                      student_temp: float = 0.1, teacher_temp: float = 0.04) -> jax.Array:
    """local_logits [B, M, K] (the student's M local crops), teacher_logits [B, K] (the teacher's
    global view), center [K] → float32 scalar: the mean over B·M of the cross-entropy above."""
    probs = teacher_probs(teacher_logits, center, teacher_temp)
    return jnp.mean(cross_entropy(local_logits, probs[:, None, :], student_temp))


def update_center(center: jax.Array, teacher_logits: jax.Array, momentum: float = 0.9) -> jax.Array:
    """center [K], teacher_logits [..., K] (every row of the global batch) → m·c + (1 − m)·row mean, float32 [K]."""
    rows = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)).reshape(-1, teacher_logits.shape[-1])
    return momentum * center.astype(jnp.float32) + (1.0 - momentum) * jnp.mean(rows, axis=0)
