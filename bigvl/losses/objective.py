"""The training objective: one object, built from the config, that owns every loss term.

    objective = Objective.from_config(config, mesh)          # checks config.loss; ValueError names the key
    outputs = objective.model_outputs(model, params, batch)   # what the model must compute, per example
    total, terms, loss_state = objective(outputs, batch, loss_state)

`terms` are named `*_loss` scalars; `total` = Σ weight · term, summed here and nowhere else:

    contrastive_loss  × loss.contrastive_weight · (1 − λ)   always (the configured contrastive loss, below)
    distill_loss      × loss.contrastive_weight · λ         λ = loss.distill_weight > 0 (MobileCLIP)
    grouping_loss     × loss.grouping_weight                > 0 (DreamLIP's subcaption grouping)
    caption_loss      × loss.caption_weight                 captioners (CoCa, CLIPS)
    mim_loss          × loss.mim_weight                     > 0 (SyCoCa: model.decoder.mim_mask_ratio > 0)
    locca_loss        × loss.locca_weight                   > 0 (SigLIP 2's LocCa decoder: model.locca.depth > 0)
    self_distill_loss × loss.self_distill.weight            > 0 (SigLIP 2 / SILC: local crops vs the EMA teacher)
    masked_prediction_loss × loss.masked_prediction.weight  > 0 (SigLIP 2 / TIPS: masked patches vs the teacher)

The last two are on from step round(loss.self_distill.start_fraction · total_steps) (bigvl/train/teacher.py);
before it they read 0 (the batch carries no teacher targets then).

The contrastive term:
- one text per image (text_embeds [B, E]): `loss.name` = softmax (CLIP) | sigmoid (SigLIP)
  | softmax_tiled (Inf-CL ring) | sigmoid_ring | cloob | cloob_tiled (CLOOB's Hopfield retrieval + InfoLOOB);
- several texts per image (text_embeds [B, T, E], from the caption strategy): `loss.multi_text` =
    per_text                 mean (or `loss.text_weights`) of per-slot InfoNCE (CLIPS, dual)
    multi_positive           one softmax, every text of an image a positive
    per_text+multi_positive  DreamLIP: the sum of the two
    long_clip                Long-CLIP: long caption + PCA-reduced image vs first sentence
    fix_clip                 FIX-CLIP: long caption vs the image, short caption vs the image with
                             loss.fix_clip_mask_ratio of its patches masked (bigvl/losses/long_text.py)
    alip                     ALIP: gated alt-text and caption terms (EMA state)
    flair                    FLAIR: multi-positive sigmoid, text-conditioned + global (loss.name sigmoid)

Some objectives carry state between steps (ALIP's similarity EMAs): `initial_state()` gives
it, the call returns the next one; the train state keeps it as `state["loss_state"]`.

With `data.negative_word_groups` set (NegCLIP hard negatives, one text per image) the softmax
term's image→text side also ranks each image against the batch's edited texts.

Model outputs: image_embeds [B, E], text_embeds [B, E] or [B, T, E], logit_scale, logit_bias
(SigLIP), patch_embeds [B, N, E] (grouping), caption_nll / caption_tokens [B] (captioners),
negative_embeds [B, E] (hard negatives). Batch keys read here: tokens [B, T, L], target_tokens
[B, Ld] (captioners), teacher_image, teacher_text [B, Dt] and teacher_logit_scale [B]
(distillation), negative_tokens [B, L] and negative_valid [B] (hard negatives).

A new term: a function of (outputs, batch) in this package, a `loss.*_weight` default in
`loss_config_defaults` (bigvl/losses/config_defaults.py), and one line in `Objective.terms`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bigvl.data.caption_strategies import make_caption_strategy
from bigvl.data.hard_negatives import enabled as hard_negatives_enabled
from bigvl.losses import captioning, cloob, contrastive, flair, locca, long_text, recipe_terms, ring
from bigvl.losses.masked_prediction import masked_prediction_loss
from bigvl.losses.multi_text import multi_positive_softmax_loss, per_text_softmax_loss
from bigvl.losses.self_distill import self_distill_loss, update_center
from bigvl.models import image_size_of
from bigvl.models.distill_heads import DistillHeads
from bigvl.models.locca import locca_enabled
from bigvl.models.naflex import images_from_batch

LOSSES = ("softmax", "sigmoid", "softmax_tiled", "sigmoid_ring", "cloob", "cloob_tiled")
MULTI_TEXT_LOSSES = ("per_text", "multi_positive", "per_text+multi_positive", "long_clip", "alip", "fix_clip", "flair")
DISTILL_KINDS = ("kd", "cosine")
MODEL_KINDS_WITH_CAPTIONS = ("coca", "clips")
SINGLE_FIELD_STRATEGIES = ("alt", "recap", "mix", "uniform")  # a whole stored field per text (distillation)


def teacher_enabled(loss_cfg) -> bool:
    """Whether loss.self_distill or loss.masked_prediction is on (the prototype heads, and in the train state
    an EMA teacher: bigvl/train/teacher.py)."""
    return loss_cfg.self_distill.weight > 0 or loss_cfg.masked_prediction.weight > 0


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"config key {key!r}: {message}")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The loss of a run (see the module docstring). Build it with `Objective.from_config`."""
    cfg: Any  # config.loss
    num_texts: int  # texts per image from the caption strategy
    captioner: bool  # model.kind coca | clips: outputs carry caption_nll / caption_tokens
    mesh: Any = None  # the ring losses' mesh
    negatives: bool = False  # data.negative_word_groups: NegCLIP hard-negative texts in the batch
    mask_patch: int = 0  # FIX-CLIP: the image patch size its masks align to (0: no masked image)
    heads: Any = None  # SigLIP 2's DistillHeads (loss.self_distill / loss.masked_prediction on), else None

    @classmethod
    def from_config(cls, config, mesh=None) -> "Objective":
        """Checks `config.loss` against the model kind and the caption strategy; ValueError names the key."""
        loss, kind, strategy = config.loss, config.model.kind, config.data.caption_strategy
        num_texts = make_caption_strategy(config.data, count_tokens=len).num_texts
        _check(loss.name in LOSSES, "loss.name", f"{loss.name!r} is not one of {LOSSES}")
        _check(loss.multi_text in MULTI_TEXT_LOSSES, "loss.multi_text",
               f"{loss.multi_text!r} is not one of {MULTI_TEXT_LOSSES}")
        _check(loss.tile_size >= 1, "loss.tile_size", f"must be >= 1, got {loss.tile_size}")
        flair_model = bool(config.model.get("flair_pool_heads", 0))
        _check((loss.multi_text == "flair") == flair_model, "loss.multi_text", "FLAIR needs both loss.multi_text "
               f"'flair' and model.flair_pool_heads > 0, got {loss.multi_text!r} and "
               f"{config.model.get('flair_pool_heads', 0)} heads")
        if flair_model:
            _check(loss.name == "sigmoid" and kind == "two_tower", "loss.name", "FLAIR's multi-positive terms are "
                   f"sigmoid losses on the two-tower model, got loss.name {loss.name!r}, model.kind {kind!r}")
            _check(config.optim.grad_accum_steps <= 1, "optim.grad_accum_steps", "FLAIR's text-conditioned logits "
                   "pair every image with every text of the batch inside the forward: no micro-batches")
        elif num_texts > 1:
            _check(loss.name == "softmax", "loss.name", f"caption strategy {strategy!r} gives {num_texts} texts "
                   "per image; only the plain softmax loss takes several")
            _check(len(loss.text_weights) in (0, num_texts), "loss.text_weights",
                   f"needs {num_texts} weights (one per text of {strategy!r}) or none")
        else:
            _check(not loss.text_weights, "loss.text_weights", f"caption strategy {strategy!r} gives 1 text per "
                   f"image; per-text weights {list(loss.text_weights)} would be ignored")
        if loss.name in ("sigmoid", "sigmoid_ring"):
            _check(config.model.bias_init is not None, "model.bias_init",
                   f"loss.name {loss.name!r} needs a learnable logit bias: set model.bias_init "
                   "(SigLIP: -10.0, with model.temperature_init 10.0)")
        needs = {"long_clip": "long", "alip": "dual", "fix_clip": "multi"}.get(loss.multi_text)
        if needs:
            _check(strategy == needs, "loss.multi_text", f"{loss.multi_text!r} needs data.caption_strategy "
                   f"{needs!r} (its 2 texts in order), got {strategy!r}")
        if loss.grouping_weight:
            _check(loss.grouping_weight > 0, "loss.grouping_weight", f"must be >= 0, got {loss.grouping_weight}")
            _check(kind == "two_tower", "loss.grouping_weight", "the grouping loss needs the two-tower model's "
                   f"patch embeddings, model.kind is {kind!r}")
            _check(loss.name == "softmax", "loss.grouping_weight",
                   f"the grouping loss adds to the plain softmax loss, loss.name is {loss.name!r}")
            _check(0.0 <= loss.grouping_threshold < 1.0, "loss.grouping_threshold",
                   f"{loss.grouping_threshold} is not in [0, 1) (weights are min-max normalised)")
        if loss.multi_text == "fix_clip":
            _check(num_texts == 2 and kind == "two_tower", "loss.multi_text", f"'fix_clip' needs the two-tower "
                   f"model and 2 texts per image (long, short), got {kind!r} and {num_texts}")
            _check(0.0 <= loss.fix_clip_mask_ratio < 1.0, "loss.fix_clip_mask_ratio",
                   f"{loss.fix_clip_mask_ratio} is not in [0, 1)")
        _check(loss.distill_kind in DISTILL_KINDS, "loss.distill_kind",
               f"{loss.distill_kind!r} is not one of {DISTILL_KINDS}")
        if loss.distill_weight:
            _check(0.0 < loss.distill_weight <= 1.0, "loss.distill_weight", f"{loss.distill_weight} is not in [0, 1]")
            _check(strategy in SINGLE_FIELD_STRATEGIES, "loss.distill_weight",
                   f"distillation needs one whole stored text per image (strategy alt, recap, mix or uniform: "
                   f"the teacher embedded whole fields), got {strategy!r}")
            _check(kind == "two_tower" and loss.name == "softmax", "loss.distill_weight",
                   f"distillation adds to the two-tower softmax loss, got model.kind {kind!r}, loss.name {loss.name!r}")
        captioner = kind in MODEL_KINDS_WITH_CAPTIONS
        if captioner:
            _check(loss.name == "softmax", "loss.name", f"model.kind {kind!r} needs 'softmax'")
        mim = float(config.model.decoder.get("mim_mask_ratio", 0.0)) > 0
        _check(mim == (loss.mim_weight > 0) and (kind == "coca" or not mim), "loss.mim_weight",
               f"SyCoCa's masked image modelling needs loss.mim_weight > 0 and model.decoder.mim_mask_ratio > 0 "
               f"together on model.kind 'coca', got {loss.mim_weight}, "
               f"{config.model.decoder.get('mim_mask_ratio', 0.0)} and {kind!r}")
        _check((loss.locca_weight > 0) == locca_enabled(config.model) and (kind == "two_tower" or loss.locca_weight <= 0),
               "loss.locca_weight", f"SigLIP 2's LocCa decoder needs loss.locca_weight > 0 and model.locca.depth > 0 "
               f"together on model.kind 'two_tower', got {loss.locca_weight}, "
               f"{config.model.get('locca', {}).get('depth', 0)} and {kind!r}")
        negatives = hard_negatives_enabled(config.data)
        if negatives:
            _check(kind == "two_tower" and loss.name == "softmax" and num_texts == 1, "data.negative_word_groups",
                   f"hard negatives (NegCLIP) extend the two-tower softmax loss with one text per image; got "
                   f"model.kind {kind!r}, loss.name {loss.name!r}, {num_texts} texts from {strategy!r}")
        mask_patch = image_size_of(config.model.image).patch_size if loss.multi_text == "fix_clip" else 0
        heads = None
        if teacher_enabled(loss):
            sd = loss.self_distill
            _check(kind == "two_tower" and not config.model.get("lora", {}).get("rank", 0), "loss.self_distill.weight",
                   f"SigLIP 2's self-distillation needs the two-tower model without LoRA, got model.kind {kind!r}")
            _check(0.0 < sd.start_fraction < 1.0, "loss.self_distill.start_fraction", f"{sd.start_fraction} is not in (0, 1)")
            _check(0.0 <= sd.ema_momentum < 1.0, "loss.self_distill.ema_momentum", f"{sd.ema_momentum} is not in [0, 1)")
            _check(sd.student_temp > 0 and sd.teacher_temp > 0, "loss.self_distill.teacher_temp", "temperatures must be > 0")
            _check(len(sd.local_scale) == 2 and 0 < sd.local_scale[0] <= sd.local_scale[1] <= 1,
                   "loss.self_distill.local_scale", f"{list(sd.local_scale)} is not (min, max) in (0, 1]")
            patch = image_size_of(config.model.image).patch_size
            _check(sd.weight <= 0 or (sd.local_size % patch == 0 and sd.local_crops >= 1), "loss.self_distill.local_size",
                   f"local crops of {sd.local_size} px (x {sd.local_crops}) must be >= 1 and a multiple of the patch size "
                   f"{patch} (the ViT resizes its position grid to them)")
            _check(0.0 < loss.masked_prediction.mask_ratio < 1.0, "loss.masked_prediction.mask_ratio",
                   f"{loss.masked_prediction.mask_ratio} is not in (0, 1)")
            heads = DistillHeads(image_size_of(config.model.image).width, sd.hidden_dim, sd.bottleneck_dim,
                                 sd.num_prototypes)
        return cls(cfg=loss, num_texts=num_texts, captioner=captioner, mesh=mesh, negatives=negatives,
                   mask_patch=mask_patch, heads=heads)

    # ------------------------------------------------------------------ what the model computes
    def needs_patch_embeds(self) -> bool:
        """Whether the terms read outputs["patch_embeds"] (DreamLIP's grouping loss)."""
        return self.cfg.grouping_weight > 0

    def model_outputs(self, model, params, batch: dict) -> dict:
        """The model's outputs on a (micro-)batch {image [b,S,S,3], tokens [b,T,L], target_tokens?}.

        Texts are encoded as one [b·T, L] batch; text_embeds come back [b, T, E] when T > 1
        (per example, so micro-batch outputs concatenate in example order).
        """
        b, t, length = batch["tokens"].shape
        kwargs = {"target_tokens": batch["target_tokens"]} if "target_tokens" in batch else {}
        if self.needs_patch_embeds():
            kwargs["with_patch_embeds"] = True
        if self.cfg.locca_weight > 0:  # SigLIP 2's LocCa decoder (bigvl/data/locca.py writes its inputs)
            kwargs.update(locca_inputs=batch["locca_inputs"], locca_labels=batch["locca_labels"])
        tokens = batch["tokens"].reshape(b * t, length)
        if self.negatives:  # one text-tower call for the texts and their negatives
            tokens = jnp.concatenate([tokens, batch["negative_tokens"]], axis=0)
        images = images_from_batch(batch)  # NaFlex: NaflexImages (image_patches, image_spatial_shapes)
        if self.mask_patch:  # FIX-CLIP: the masked copies after the images, one image-tower call; masks
            # drawn from each image's pixel sum (the batch carries no step or record id here)
            seeds = jnp.sum(images.astype(jnp.uint32), axis=(1, 2, 3))
            images = jnp.concatenate([images, long_text.mask_image_patches(
                images, seeds, self.mask_patch, self.cfg.fix_clip_mask_ratio)], axis=0)
        outputs = model.apply({"params": params}, images, tokens, **kwargs)
        if self.mask_patch:
            image = outputs["image_embeds"]
            outputs["image_embeds"], outputs["masked_image_embeds"] = image[:b], image[b:]
        if self.negatives:
            text = outputs["text_embeds"]
            outputs["text_embeds"], outputs["negative_embeds"] = text[:b * t], text[b * t:]
        if t > 1:
            outputs["text_embeds"] = outputs["text_embeds"].reshape(b, t, -1)
        if "patch_mask" in batch:  # SigLIP 2's stage with the teacher (bigvl/train/teacher.py)
            outputs.update(self.student_distill_outputs(model, params, batch))
        return outputs

    def student_distill_outputs(self, model, params, batch: dict) -> dict:
        """The student's prototype logits: local_logits [b, M, K] of batch["local_views"] [b,M,s,s,3] (self-distillation)
        and masked_patch_logits [b, N, K] of batch["image"] with batch["patch_mask"] [b, N] masked (masked prediction)."""
        heads = {"params": params["self_distill"]}
        out = {}
        if self.cfg.self_distill.weight > 0:
            views = batch["local_views"]
            pooled, _ = image_tower(model, params, views.reshape(-1, *views.shape[2:]))
            out["local_logits"] = self.heads.apply(heads, pooled).reshape(*views.shape[:2], -1)
        if self.cfg.masked_prediction.weight > 0:
            _, tokens = image_tower(model, params, batch["image"], patch_mask=batch["patch_mask"],
                                    mask_token=params["self_distill"]["mask_token"])
            out["masked_patch_logits"] = self.heads.apply(heads, tokens)
        return out

    # ------------------------------------------------------------------ the loss
    def initial_state(self) -> dict:
        """The state before step 1: ALIP's EMAs; SigLIP 2's teacher centers (center, patch_center float32 [K]); else {}."""
        state = recipe_terms.alip_initial_state() if self.cfg.multi_text == "alip" else {}
        if self.heads is not None:
            state.update(center=jnp.zeros((self.heads.num_prototypes,), jnp.float32),
                         patch_center=jnp.zeros((self.heads.num_prototypes,), jnp.float32))
        return state

    def weights(self) -> dict[str, float]:
        """{term name: weight} of the terms this objective computes."""
        cfg, lam = self.cfg, self.cfg.distill_weight
        weights = {"contrastive_loss": cfg.contrastive_weight * (1.0 - lam) if lam > 0 else cfg.contrastive_weight}
        if lam > 0:
            weights["distill_loss"] = cfg.contrastive_weight * lam
        if self.needs_patch_embeds():
            weights["grouping_loss"] = cfg.grouping_weight
        if self.captioner:
            weights["caption_loss"] = cfg.caption_weight
        if cfg.mim_weight > 0:
            weights["mim_loss"] = cfg.mim_weight
        if cfg.locca_weight > 0:
            weights["locca_loss"] = cfg.locca_weight
        if cfg.self_distill.weight > 0:
            weights["self_distill_loss"] = cfg.self_distill.weight
        if cfg.masked_prediction.weight > 0:
            weights["masked_prediction_loss"] = cfg.masked_prediction.weight
        return weights

    def __call__(self, outputs: dict, batch: dict, state: dict) -> tuple[jax.Array, dict, dict]:
        """(total float32 scalar, {term: value, + diagnostics}, next state) on the global batch."""
        contrastive_term, state, diagnostics = self._contrastive(outputs, batch, state)
        terms = {"contrastive_loss": contrastive_term}
        weights = self.weights()
        if "distill_loss" in weights:
            terms["distill_loss"] = long_text.cosine_distillation_loss(
                outputs["text_embeds"], batch["teacher_text"]) if self.cfg.distill_kind == "cosine" else \
                contrastive.distillation_loss(
                outputs["image_embeds"], outputs["text_embeds"], outputs["logit_scale"], batch["teacher_image"],
                batch["teacher_text"], jnp.mean(batch["teacher_logit_scale"]))
        if "grouping_loss" in weights:
            text = outputs["text_embeds"]
            terms["grouping_loss"] = recipe_terms.grouping_loss(
                outputs["patch_embeds"], text if text.ndim == 3 else text[:, None], outputs["logit_scale"],
                self.cfg.grouping_threshold)
        if "caption_loss" in weights:
            terms["caption_loss"] = captioning.caption_loss(outputs)
        if "mim_loss" in weights:
            terms["mim_loss"] = jnp.sum(outputs["mim_error"]) / jnp.maximum(jnp.sum(outputs["mim_patches"]), 1.0)
        if "locca_loss" in weights:
            terms["locca_loss"] = locca.locca_loss(outputs)
        if self.heads is not None:
            state = self._distill_terms(terms, outputs, batch, state, weights)
        total = sum(weights[name] * value for name, value in terms.items())
        return total, {**terms, **diagnostics}, state

    def _distill_terms(self, terms: dict, outputs: dict, batch: dict, state: dict, weights: dict) -> dict:
        """Adds SigLIP 2's terms that are on to `terms` (0 before the stage: no patch_mask in the batch); the next
        centers (each moved only by its own term's teacher logits)."""
        sd, zero = self.cfg.self_distill, jnp.zeros((), jnp.float32)
        for name in ("self_distill_loss", "masked_prediction_loss"):
            if name in weights:
                terms[name] = zero
        if "patch_mask" not in batch:
            return state
        temps = dict(student_temp=sd.student_temp, teacher_temp=sd.teacher_temp)
        state = dict(state)
        if "self_distill_loss" in weights:
            teacher = batch["teacher_global_logits"]
            terms["self_distill_loss"] = self_distill_loss(outputs["local_logits"], teacher, state["center"], **temps)
            state["center"] = update_center(state["center"], teacher, sd.center_momentum)
        if "masked_prediction_loss" in weights:
            teacher_patches = batch["teacher_patch_logits"]
            terms["masked_prediction_loss"] = masked_prediction_loss(
                outputs["masked_patch_logits"], teacher_patches, batch["patch_mask"], state["patch_center"], **temps)
            state["patch_center"] = update_center(state["patch_center"], teacher_patches, sd.center_momentum)
        return state

    def _contrastive(self, outputs: dict, batch: dict, state: dict) -> tuple[jax.Array, dict, dict]:
        """(the contrastive term, next state, diagnostics)."""
        cfg = self.cfg
        image, text, scale = outputs["image_embeds"], outputs["text_embeds"], outputs["logit_scale"]
        if cfg.multi_text == "flair":
            return flair.flair_loss(image, text if text.ndim == 3 else text[:, None], outputs["flair_logits"], scale,
                                    outputs["logit_bias"]), state, {}
        if text.ndim == 3:
            mode = cfg.multi_text
            if mode == "alip":
                loss, state, diagnostics = recipe_terms.alip_loss(image, text, scale, state, cfg.alip_momentum)
                return loss, state, diagnostics
            if mode == "fix_clip":
                return long_text.fix_clip_loss(image, outputs["masked_image_embeds"], text, scale), state, {}
            if mode == "long_clip":
                return recipe_terms.long_clip_loss(image, text, scale, cfg.pca_dim), state, {}
            if mode == "multi_positive":
                return multi_positive_softmax_loss(image, text, scale), state, {}
            weights = jnp.asarray(cfg.text_weights, jnp.float32) if cfg.text_weights else None
            per_text = per_text_softmax_loss(image, text, scale, weights)
            if mode == "per_text+multi_positive":
                return per_text + multi_positive_softmax_loss(image, text, scale), state, {}
            return per_text, state, {}
        if self.negatives:
            return contrastive.negclip_softmax_loss(image, text, outputs["negative_embeds"], batch["negative_valid"],
                                                    scale), state, {}
        if cfg.name == "softmax_tiled":
            loss = ring.tiled_softmax_contrastive_loss(image, text, scale, mesh=self.mesh, tile_size=cfg.tile_size)
        elif cfg.name == "sigmoid_ring":
            loss = ring.ring_sigmoid_contrastive_loss(image, text, scale, outputs["logit_bias"], mesh=self.mesh,
                                                      tile_size=cfg.tile_size)
        elif cfg.name in ("cloob", "cloob_tiled"):
            loss = (cloob.cloob_loss(image, text, scale, cfg.cloob_beta) if cfg.name == "cloob" else
                    cloob.tiled_cloob_loss(image, text, scale, cfg.cloob_beta, cfg.tile_size))
        elif cfg.name == "sigmoid":
            loss = contrastive.sigmoid_contrastive_loss(image, text, scale, outputs["logit_bias"])
        else:
            loss = contrastive.softmax_contrastive_loss(image, text, scale)
        return loss, state, {}


def image_tower(model, params, images: jax.Array, **kwargs) -> tuple[jax.Array, jax.Array]:
    """The two-tower model's image tower alone (no projection): images [B,S,S,3] → (pooled [B,W], tokens [B,N,W]);
    kwargs: the tower's patch_mask / mask_token."""
    return model.apply({"params": params}, images, method=lambda m, x: m.image(x, **kwargs))
