"""Contrastive losses over the global batch.

Written as plain jnp on global [B, D] arrays: under `jax.jit` with NamedSharding inputs,
GSPMD inserts the collectives, so each loss (and its gradient) is the single-device value
on any mesh. The B x B logits are materialised (GSPMD shards them); variants that never
hold them (chunked, ring) belong beside these.

Embeddings come L2-normalised from the model, in any float dtype; every loss computes
in float32. `logit_scale` is the multiplier itself (exp of the stored log temperature).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _logits(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """[B, D], [B, D], scalar -> float32 [B, B] with logits[i, j] = scale * <image_i, text_j>."""
    image_embeds = image_embeds.astype(jnp.float32)
    text_embeds = text_embeds.astype(jnp.float32)
    return jnp.asarray(logit_scale, jnp.float32) * (image_embeds @ text_embeds.T)


def _accuracies(logits: jax.Array) -> dict[str, jax.Array]:
    """Fraction of images whose best text is their own (i2t) and of texts whose best image is."""
    labels = jnp.arange(logits.shape[0])
    return {"i2t_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels),
            "t2i_accuracy": jnp.mean(jnp.argmax(logits, axis=0) == labels)}


def softmax_contrastive_terms(image_embeds: jax.Array, text_embeds: jax.Array,
                              logit_scale: jax.Array) -> jax.Array:
    """[B, D], [B, D], scalar → float32 [B]: pair i's 0.5 · (CE of logits row i + CE of column i).

    Their mean is `softmax_contrastive_loss`; weighted means give per-pair weighted
    objectives (ALIP's gates).
    """
    logits = _logits(image_embeds, text_embeds, logit_scale)
    labels = jnp.arange(logits.shape[0])
    return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels)
                  + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels))


def softmax_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                             *, return_metrics: bool = False):
    """CLIP InfoNCE: mean of the image->text and text->image cross-entropies.

    image_embeds, text_embeds: [B, D], row i of each is a positive pair. logit_scale: scalar.
    Returns the float32 scalar loss, or (loss, {"i2t_accuracy", "t2i_accuracy"}) when
    `return_metrics` (use with `jax.value_and_grad(..., has_aux=True)`).
    """
    logits = _logits(image_embeds, text_embeds, logit_scale)
    labels = jnp.arange(logits.shape[0])
    image_to_text = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    text_to_image = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
    loss = 0.5 * (jnp.mean(image_to_text) + jnp.mean(text_to_image))
    return (loss, _accuracies(logits)) if return_metrics else loss


def negclip_softmax_loss(image_embeds: jax.Array, text_embeds: jax.Array, negative_embeds: jax.Array,
                         negative_valid: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """NegCLIP (Yuksekgonul et al. 2023): CLIP InfoNCE whose image→text softmax also ranks
    every image against the batch's hard-negative texts.

    image_embeds, text_embeds, negative_embeds: [B, D] (negative j is an edited copy of text
    j); negative_valid: [B] (0 = text j had no negative: its column is left out). The
    text→image term is CLIP's. Returns the float32 scalar loss.
    """
    logits = _logits(image_embeds, text_embeds, logit_scale)
    negatives = _logits(image_embeds, negative_embeds, logit_scale)
    negatives = jnp.where(negative_valid.astype(bool)[None, :], negatives, -jnp.inf)
    labels = jnp.arange(logits.shape[0])
    image_to_text = optax.softmax_cross_entropy_with_integer_labels(jnp.concatenate([logits, negatives], 1), labels)
    text_to_image = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
    return 0.5 * (jnp.mean(image_to_text) + jnp.mean(text_to_image))


def sigmoid_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                             logit_bias: jax.Array, *, return_metrics: bool = False):
    """SigLIP: every (image, text) pair is an independent binary classification.

    loss = -1/B * sum_ij log_sigmoid(z_ij * (scale * <image_i, text_j> + bias)), z = +1 on the
    diagonal and -1 elsewhere (big_vision's normalisation: sum over texts, mean over images).
    image_embeds, text_embeds: [B, D]; logit_scale, logit_bias: scalars. Returns the float32
    scalar loss, or (loss, {"i2t_accuracy", "t2i_accuracy"}) when `return_metrics`.
    """
    logits = _logits(image_embeds, text_embeds, logit_scale) + jnp.asarray(logit_bias, jnp.float32)
    signs = 2.0 * jnp.eye(logits.shape[0], dtype=jnp.float32) - 1.0
    loss = -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / logits.shape[0]
    return (loss, _accuracies(logits)) if return_metrics else loss


def distillation_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                      teacher_image: jax.Array, teacher_text: jax.Array,
                      teacher_logit_scale: jax.Array) -> jax.Array:
    """MobileCLIP's KD term: the student's batch similarity matched to the teacher's softmax.

    image_embeds, text_embeds [B, D] (student); teacher_image, teacher_text [B, Dt] (stored
    teacher embeddings, L2-normalised; Dt may differ from D); scales are scalars. With
    S = logit_scale · image textᵀ and T = teacher_logit_scale · teacher_image teacher_textᵀ:
      loss = ½ (mean_i KL(softmax(T_i·) ‖ softmax(S_i·)) + mean_j KL(softmax(T_·j) ‖ softmax(S_·j)))
    (image→text rows and text→image columns). KL differs from MobileCLIP's cross-entropy
    by the teacher's entropy, a constant: same gradient, and 0 when the student matches.
    The teacher side carries no gradient. Returns a float32 scalar.
    """
    student = _logits(image_embeds, text_embeds, logit_scale)
    teacher = jax.lax.stop_gradient(_logits(teacher_image, teacher_text, teacher_logit_scale))

    def kl(target_logits, logits):  # rows: KL(softmax(target) ‖ softmax(logits))
        target_log = jax.nn.log_softmax(target_logits, axis=-1)
        return jnp.sum(jnp.exp(target_log) * (target_log - jax.nn.log_softmax(logits, axis=-1)), axis=-1)

    return 0.5 * (jnp.mean(kl(teacher, student)) + jnp.mean(kl(teacher.T, student.T)))
