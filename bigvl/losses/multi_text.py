"""Contrastive losses for several texts per image (T texts: batches of [B, T, D] text embeddings).

Used by the caption strategies that return more than one text (`partial` with the
alt-text, `multi`, `long`, `dual`). Like `bigvl.losses.contrastive`: plain jnp on global arrays,
so under `jax.jit` with batch-sharded inputs GSPMD inserts the collectives and the
value (and gradient) is the single-device one on any mesh. Embeddings come
L2-normalised, in any float dtype; everything computes in float32. `logit_scale` is
the multiplier itself (exp of the stored log temperature).

Text t of image i is text_embeds[i, t]; with logits s·<image_i, text_{j,t}>:

- `per_text_softmax_loss`: one CLIP InfoNCE per text slot t (image i vs the B texts
  of slot t), averaged (or weighted) over t. DreamLIP's per-sub-caption term; CLIPS's
  0.5 · (InfoNCE(image, partial) + InfoNCE(image, alt)) is T = 2; `dual` passes weights.
- `multi_positive_softmax_loss`: one softmax over all B·T texts in which every text of
  the same image is a positive (DreamLIP's multi-positive term, written as a softmax
  cross-entropy; see its docstring).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _multi_logits(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """[B, D], [B, T, D], scalar -> float32 [B, B, T]: logits[i, j, t] = scale * <image_i, text_{j,t}>."""
    image_embeds = image_embeds.astype(jnp.float32)
    text_embeds = text_embeds.astype(jnp.float32)
    return jnp.asarray(logit_scale, jnp.float32) * jnp.einsum("id,jtd->ijt", image_embeds, text_embeds)


def _check_shapes(image_embeds: jax.Array, text_embeds: jax.Array) -> None:
    if image_embeds.ndim != 2 or text_embeds.ndim != 3 or text_embeds.shape[0] != image_embeds.shape[0] \
            or text_embeds.shape[2] != image_embeds.shape[1]:
        raise ValueError(f"expected image_embeds [B, D] and text_embeds [B, T, D], got "
                         f"{image_embeds.shape} and {text_embeds.shape}")


def per_text_softmax_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                          weights: jax.Array | None = None, *, return_metrics: bool = False):
    """Σ_t w_t · InfoNCE(images, texts[:, t]): a CLIP loss per text slot.

    InfoNCE_t = 0.5 · (mean_i CE(logits_t[i, :], i) + mean_j CE(logits_t[:, j], j)) with
    logits_t[i, j] = scale · <image_i, text_{j,t}> over the global batch.
    image_embeds: [B, D]; text_embeds: [B, T, D]; logit_scale: scalar; weights: [T] or
    None for w_t = 1/T (the mean). Weights are used as given, not renormalised.
    Returns the float32 scalar loss, or (loss, {"i2t_accuracy", "t2i_accuracy"}) when
    `return_metrics`, the accuracies averaged over the T slots.
    """
    _check_shapes(image_embeds, text_embeds)
    batch, num_texts = text_embeds.shape[:2]
    logits = jnp.moveaxis(_multi_logits(image_embeds, text_embeds, logit_scale), 2, 0)  # [T, B, B]
    labels = jnp.broadcast_to(jnp.arange(batch), (num_texts, batch))
    image_to_text = optax.softmax_cross_entropy_with_integer_labels(logits, labels)  # [T, B]
    text_to_image = optax.softmax_cross_entropy_with_integer_labels(jnp.swapaxes(logits, 1, 2), labels)
    per_text = 0.5 * (jnp.mean(image_to_text, axis=1) + jnp.mean(text_to_image, axis=1))  # [T]
    if weights is None:
        loss = jnp.mean(per_text)
    else:
        weights = jnp.asarray(weights, jnp.float32)
        if weights.shape != (num_texts,):
            raise ValueError(f"weights must have shape ({num_texts},), got {weights.shape}")
        loss = jnp.sum(weights * per_text)
    if not return_metrics:
        return loss
    return loss, {"i2t_accuracy": jnp.mean(jnp.argmax(logits, axis=2) == labels),
                  "t2i_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels)}


def multi_positive_softmax_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                                *, return_metrics: bool = False):
    """Every text of the same image is a positive, in one softmax over all B·T texts.

    With z[i, (j, t)] = scale · <image_i, text_{j,t}>:
      image→text: L_i = -(1/T) Σ_t log softmax_{(j,t')}(z[i, :])[(i, t)]
                      = logsumexp_{j,t'} z[i, (j, t')] - (1/T) Σ_t z[i, (i, t)]
                  (the average of the T positives' log-probabilities, SupCon's "outside"
                  form; its minimum spreads the mass evenly over the image's T texts);
      text→image: L_{j,t} = logsumexp_i z[i, (j, t)] - z[j, (j, t)]  (one positive image);
      loss = 0.5 · (mean_i L_i + mean_{j,t} L_{j,t}).
    With T = 1 this is the CLIP InfoNCE. DreamLIP states this term as a multi-positive
    contrastive loss; its released code computes it as a circle loss on the unscaled
    cosine similarities (image→texts only), which this softmax form does not follow.
    image_embeds: [B, D]; text_embeds: [B, T, D]; logit_scale: scalar. Returns the
    float32 scalar loss, or (loss, {"i2t_accuracy", "t2i_accuracy"}) when
    `return_metrics`: the fraction of images whose best text is one of theirs and of
    texts whose best image is theirs.
    """
    _check_shapes(image_embeds, text_embeds)
    batch, num_texts = text_embeds.shape[:2]
    logits = _multi_logits(image_embeds, text_embeds, logit_scale)  # [B, B, T]
    positives = jnp.diagonal(logits, axis1=0, axis2=1)  # [T, B]: positives[t, i] = z[i, (i, t)]
    image_to_text = jax.nn.logsumexp(logits, axis=(1, 2)) - jnp.mean(positives, axis=0)  # [B]
    text_to_image = jax.nn.logsumexp(logits, axis=0) - positives.T  # [B, T]
    loss = 0.5 * (jnp.mean(image_to_text) + jnp.mean(text_to_image))
    if not return_metrics:
        return loss
    images = jnp.arange(batch)
    best_text_image = jnp.argmax(logits.reshape(batch, batch * num_texts), axis=1) // num_texts
    return loss, {"i2t_accuracy": jnp.mean(best_text_image == images),
                  "t2i_accuracy": jnp.mean(jnp.argmax(logits, axis=0) == images[:, None])}
