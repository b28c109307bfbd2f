"""Recipe-specific contrastive objectives over several texts per image: Long-CLIP and ALIP.

Plain jnp on global arrays (like `bigvl.losses.contrastive`): under `jax.jit` with batch-sharded
inputs GSPMD inserts the collectives, so values and gradients are the single-device ones
on any mesh. Embeddings come L2-normalised; everything computes in float32.

- `long_clip_loss`: Long-CLIP's fine-grained + coarse terms: InfoNCE(image, long caption)
  + InfoNCE(image features kept to their top-k principal components, first sentence).
- `alip_loss`: ALIP's two contrastive terms (image vs alt-text, image vs synthetic
  caption), each per-pair weighted by its gates, from EMA-normalised similarities.
- `grouping_loss`: DreamLIP's subcaption-specific grouping loss: each sub-caption against
  the pooling of its own image's patch embeddings weighted by their similarity to it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bigvl.losses.contrastive import softmax_contrastive_loss, softmax_contrastive_terms
from bigvl.models.heads import l2_normalize


def principal_component_projection(x: jax.Array, k: int) -> jax.Array:
    """x [B, D] → [B, D]: x reconstructed from its top-`k` principal components over the batch.

    mean + (x - mean) V_k V_kᵀ with V_k the top-k eigenvectors of the batch covariance
    (the right singular vectors of the centred x, as Long-CLIP's torch.svd-based PCA).
    The basis is a constant for the gradient (stop_gradient): the gradient flows through
    the projection of x but not through the eigen-decomposition, whose derivative is
    ill-conditioned when eigenvalues are close. k ≥ D returns x unchanged.
    """
    x = x.astype(jnp.float32)
    if k >= x.shape[-1]:
        return x
    mean = jnp.mean(x, axis=0, keepdims=True)
    centred = x - mean
    covariance = jax.lax.stop_gradient(centred.T @ centred)  # [D, D], summed over the global batch
    _, vectors = jnp.linalg.eigh(covariance)  # ascending eigenvalues
    basis = vectors[:, -k:]  # [D, k]
    return mean + (centred @ basis) @ basis.T


def long_clip_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                   pca_dim: int = 32) -> jax.Array:
    """Long-CLIP: InfoNCE(image, long) + InfoNCE(normalise(PCA_k(image)), short).

    image_embeds [B, D]; text_embeds [B, 2, D] with slot 0 the long caption and slot 1 its
    first sentence (strategy `long`); logit_scale scalar. The sum of the two terms, as
    Long-CLIP's training loss. Returns a float32 scalar.
    """
    if text_embeds.ndim != 3 or text_embeds.shape[1] != 2:
        raise ValueError(f"long_clip_loss needs text_embeds [B, 2, D] (long, short), got {text_embeds.shape}")
    image = image_embeds.astype(jnp.float32)
    coarse_image = l2_normalize(principal_component_projection(image, pca_dim))
    return (softmax_contrastive_loss(image, text_embeds[:, 0], logit_scale)
            + softmax_contrastive_loss(coarse_image, text_embeds[:, 1], logit_scale))


ALIP_EMA_KEYS = ("alt_caption", "image_alt", "image_caption")


def alip_initial_state() -> dict[str, jax.Array]:
    """The EMAs of the three mean similarities; 1.0 at the start, as in ALIP's code."""
    return {key: jnp.ones((), jnp.float32) for key in ALIP_EMA_KEYS}


def alip_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
              ema: dict[str, jax.Array], momentum: float = 0.99):
    """ALIP's adaptive loss with its Language and Description Consistency Gates.

    image_embeds [B, D]; text_embeds [B, 2, D] with slot 0 the alt-text and slot 1 the
    synthetic caption (strategy `dual`); ema: {alt_caption, image_alt, image_caption}
    scalars (see `alip_initial_state`). With s the per-example cosine similarities and
    m ← momentum · m + (1 − momentum) · mean(s) for each of the three:
      sample gate  w_s = min(exp(s_alt,caption − m)², 1)             (LCG)
      pair gates   w_alt = exp(s_image,alt − m)², w_cap = exp(s_image,caption − m)²
                   where w_s < 1, else 1                              (DCG)
      loss = mean_i w_s w_alt ℓ_alt,i + mean_i w_s w_cap ℓ_cap,i
    with ℓ_i the per-pair InfoNCE (0.5 · (row CE + column CE)). Gates carry no gradient.
    Returns (float32 loss, new ema dict, metrics {gate means, similarities}).
    """
    if text_embeds.ndim != 3 or text_embeds.shape[1] != 2:
        raise ValueError(f"alip_loss needs text_embeds [B, 2, D] (alt, caption), got {text_embeds.shape}")
    image = image_embeds.astype(jnp.float32)
    alt, caption = text_embeds[:, 0].astype(jnp.float32), text_embeds[:, 1].astype(jnp.float32)
    sims = jax.lax.stop_gradient({"alt_caption": jnp.sum(alt * caption, -1),
                                  "image_alt": jnp.sum(image * alt, -1),
                                  "image_caption": jnp.sum(image * caption, -1)})
    new_ema = {key: momentum * ema[key] + (1.0 - momentum) * jnp.mean(sims[key]) for key in ALIP_EMA_KEYS}
    gate = {key: jnp.exp(sims[key] - new_ema[key]) ** 2 for key in ALIP_EMA_KEYS}
    sample = jnp.minimum(gate["alt_caption"], 1.0)
    uncertain = gate["alt_caption"] < 1.0
    pair_alt = jnp.where(uncertain, gate["image_alt"], 1.0)
    pair_caption = jnp.where(uncertain, gate["image_caption"], 1.0)
    loss = (jnp.mean(sample * pair_alt * softmax_contrastive_terms(image, alt, logit_scale))
            + jnp.mean(sample * pair_caption * softmax_contrastive_terms(image, caption, logit_scale)))
    metrics = {"alip_sample_gate": jnp.mean(sample), "alip_alt_gate": jnp.mean(pair_alt),
               "alip_caption_gate": jnp.mean(pair_caption),
               "alip_alt_caption_sim": jnp.mean(sims["alt_caption"])}
    return loss, new_ema, metrics


def grouping_loss(patch_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                  threshold: float = 0.1) -> jax.Array:
    """DreamLIP's subcaption-specific grouping loss (its released `finegrained_loss`).

    patch_embeds [B, N, D] (an image's N patch embeddings), text_embeds [B, T, D] (its T
    texts), both L2-normalised; logit_scale scalar. For each text t of image b:
      s_p  = <text_bt, patch_bp>                     similarity to each of b's own patches
      a_p  = (s_p − min_p s) / (max_p s − min_p s)   min-max over the patches
      a_p  = 0 where a_p < threshold                 (sparse: only the matching region)
      g_bt = normalise(Σ_p a_p patch_bp / Σ_p a_p)   the text's grouped region embedding
    then one InfoNCE over all B·T (text, region) pairs: 0.5 · (CE of the B·T × B·T logits
    logit_scale · text · gᵀ by rows + by columns), the matching pair the positive. The
    weights a carry gradient (as in DreamLIP's code). Returns a float32 scalar.
    """
    if patch_embeds.ndim != 3 or text_embeds.ndim != 3 or patch_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(f"grouping_loss needs patch_embeds [B, N, D] and text_embeds [B, T, D], got "
                         f"{patch_embeds.shape} and {text_embeds.shape}")
    patches, texts = patch_embeds.astype(jnp.float32), text_embeds.astype(jnp.float32)
    similarity = jnp.einsum("btd,bpd->btp", texts, patches)
    low = jnp.min(similarity, axis=-1, keepdims=True)
    high = jnp.max(similarity, axis=-1, keepdims=True)
    weights = (similarity - low) / (high - low + 1e-10)
    weights = jnp.where(weights < threshold, 0.0, weights)
    # DreamLIP divides by Σ_p a_p first; the normalisation below removes that positive scale
    grouped = l2_normalize(jnp.einsum("btp,bpd->btd", weights, patches))
    b, t, d = texts.shape
    return softmax_contrastive_loss(grouped.reshape(b * t, d), texts.reshape(b * t, d), logit_scale)
