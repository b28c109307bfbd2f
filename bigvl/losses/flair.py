"""FLAIR's objective (Xiao et al. 2025): multi-positive sigmoid losses over every (image, text) pair.

Each image i comes with T texts (the `multi` strategy's sentences of its long caption, plus
its alt-text); text (j, t) is a positive of image i iff j = i. With z = +1 for positives and
−1 otherwise, on logits [B, B·T] (text (j, t) in column j·T + t):

    mps(logits) = −(1/B) Σ_i Σ_(j,t) log σ(z_i,(j,t) · logits[i, (j,t)])    (SigLIP's normalisation)
    flair_loss  = mps(flair_logits) + mps(scale · image_embeds · textsᵀ + bias)

the first the text-conditioned term (each pair's logit from the image pooled with that text as
query, `bigvl.models.flair_pooling`), the second the global term on the global image embedding.
Plain jnp on global arrays: the single-device value on any mesh. Everything in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def multi_positive_sigmoid_loss(logits: jax.Array, num_texts: int) -> jax.Array:
    """logits [B, B·T] (column j·T + t: text t of image j) → float32 scalar mps(logits)."""
    logits = logits.astype(jnp.float32)
    batch = logits.shape[0]
    if logits.shape[1] != batch * num_texts:
        raise ValueError(f"expected logits [B, B·T] = [{batch}, {batch * num_texts}], got {logits.shape}")
    owner = jnp.arange(batch * num_texts) // num_texts
    signs = jnp.where(owner[None, :] == jnp.arange(batch)[:, None], 1.0, -1.0)
    return -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / batch


def flair_loss(image_embeds: jax.Array, text_embeds: jax.Array, flair_logits: jax.Array, logit_scale: jax.Array,
               logit_bias: jax.Array) -> jax.Array:
    """image_embeds [B, E], text_embeds [B, T, E] (unit rows), flair_logits [B, B·T] (scale and bias
    already in), scalars → float32 scalar: text-conditioned term + global term (module docstring)."""
    batch, num_texts, dim = text_embeds.shape
    texts = text_embeds.reshape(batch * num_texts, dim).astype(jnp.float32)
    global_logits = (jnp.asarray(logit_scale, jnp.float32) * (image_embeds.astype(jnp.float32) @ texts.T)
                     + jnp.asarray(logit_bias, jnp.float32))
    return multi_positive_sigmoid_loss(flair_logits, num_texts) + multi_positive_sigmoid_loss(global_logits, num_texts)
