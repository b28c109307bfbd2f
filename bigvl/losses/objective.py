"""The training objective: the model's output dict (global batch) → scalar loss.

One function, `training_loss`, picks the configured loss (`config.loss`):

- one text per image (text_embeds [B, E]): `loss.name` = softmax (CLIP) | sigmoid
  (SigLIP) | softmax_tiled (Inf-CL ring) | sigmoid_ring;
- several texts per image (text_embeds [B, T, E], from the caption strategy):
  `loss.multi_text` =
    per_text                 mean (or `loss.text_weights`) of per-slot InfoNCE (CLIPS, dual)
    multi_positive           one softmax, every text of an image a positive
    per_text+multi_positive  DreamLIP: the sum of the two
    long_clip                Long-CLIP: long caption + PCA-reduced image vs first sentence
    alip                     ALIP: gated alt-text and caption terms (EMA state)
  plus, with `loss.grouping_weight` > 0, DreamLIP's subcaption grouping loss (each text
  against its similarity-weighted pooling of the image's patch embeddings; needs
  outputs["patch_embeds"], see `needs_patch_embeds`);
  and, with `loss.distill_weight` = λ > 0, MobileCLIP's distillation from stored teacher
  embeddings: (1 − λ) · contrastive + λ · KD (outputs teacher_image, teacher_text [B,Dt],
  teacher_logit_scale [B], from the batch).

Some objectives carry state between steps (ALIP's similarity EMAs): `initial_loss_state`
gives it, `training_loss` returns the next one; it lives in the train state (and in
checkpoints) as `state["loss_state"]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bigvl.losses import contrastive as losses

from bigvl.losses import recipe_terms as recipe_losses

from bigvl.losses import ring as ring_losses
from bigvl.losses.multi_text import multi_positive_softmax_loss, per_text_softmax_loss

LOSSES = ("softmax", "sigmoid", "softmax_tiled", "sigmoid_ring")
MULTI_TEXT_LOSSES = ("per_text", "multi_positive", "per_text+multi_positive", "long_clip", "alip")


def initial_loss_state(loss_cfg) -> dict:
    """The objective's state before step 1: ALIP's EMAs, else {} (stateless)."""
    return recipe_losses.alip_initial_state() if loss_cfg.multi_text == "alip" else {}


def needs_patch_embeds(loss_cfg) -> bool:
    """Whether the objective reads outputs["patch_embeds"] (DreamLIP's grouping loss)."""
    return loss_cfg.grouping_weight > 0


def training_loss(outputs: dict, loss_cfg, mesh, loss_state: dict) -> tuple[jax.Array, dict, dict]:
    """(loss, next loss_state, extra metrics) for the model outputs of the global batch.

    outputs: image_embeds [B,E], text_embeds [B,E] or [B,T,E], logit_scale, logit_bias
    (SigLIP), patch_embeds [B,N,E] (grouping loss). loss_state: from `initial_loss_state`
    or the previous step.
    """
    loss, loss_state, metrics = _contrastive_loss(outputs, loss_cfg, mesh, loss_state)
    weight = loss_cfg.distill_weight
    if weight > 0:
        distill = losses.distillation_loss(outputs["image_embeds"], outputs["text_embeds"], outputs["logit_scale"],
                                           outputs["teacher_image"], outputs["teacher_text"],
                                           jnp.mean(outputs["teacher_logit_scale"]))
        metrics = {**metrics, "contrastive_loss": loss, "distill_loss": distill}
        loss = (1.0 - weight) * loss + weight * distill
    if needs_patch_embeds(loss_cfg):
        text = outputs["text_embeds"]
        grouping = recipe_losses.grouping_loss(outputs["patch_embeds"], text if text.ndim == 3 else text[:, None],
                                               outputs["logit_scale"], loss_cfg.grouping_threshold)
        loss = loss + loss_cfg.grouping_weight * grouping
        metrics = {**metrics, "grouping_loss": grouping}
    return loss, loss_state, metrics


def _contrastive_loss(outputs: dict, loss_cfg, mesh, loss_state: dict) -> tuple[jax.Array, dict, dict]:
    """`training_loss` without the distillation and grouping terms."""
    image, text, scale = outputs["image_embeds"], outputs["text_embeds"], outputs["logit_scale"]
    if text.ndim == 3:
        mode = loss_cfg.multi_text
        if mode == "alip":
            return recipe_losses.alip_loss(image, text, scale, loss_state, loss_cfg.alip_momentum)
        if mode == "long_clip":
            return recipe_losses.long_clip_loss(image, text, scale, loss_cfg.pca_dim), loss_state, {}
        weights = jnp.asarray(loss_cfg.text_weights, jnp.float32) if loss_cfg.text_weights else None
        if mode == "multi_positive":
            return multi_positive_softmax_loss(image, text, scale), loss_state, {}
        per_text = per_text_softmax_loss(image, text, scale, weights)
        if mode == "per_text+multi_positive":
            return per_text + multi_positive_softmax_loss(image, text, scale), loss_state, {}
        return per_text, loss_state, {}
    if loss_cfg.name == "softmax_tiled":
        loss = ring_losses.tiled_softmax_contrastive_loss(image, text, scale, mesh=mesh,
                                                          tile_size=loss_cfg.tile_size)
    elif loss_cfg.name == "sigmoid_ring":
        loss = ring_losses.ring_sigmoid_contrastive_loss(image, text, scale, outputs["logit_bias"],
                                                         mesh=mesh, tile_size=loss_cfg.tile_size)
    elif loss_cfg.name == "sigmoid":
        loss = losses.sigmoid_contrastive_loss(image, text, scale, outputs["logit_bias"])
    else:
        loss = losses.softmax_contrastive_loss(image, text, scale)
    return loss, loss_state, {}
