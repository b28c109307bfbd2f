"""Every `config.loss` key with its default and what it means; `Objective.from_config` (bigvl/losses/objective.py)
checks them against the model and the caption strategy."""
from __future__ import annotations

import ml_collections

from bigvl.losses import cloob


def loss_config_defaults() -> ml_collections.ConfigDict:
    """Every `config.loss` key with its default."""
    return ml_collections.ConfigDict({
        # softmax | sigmoid: plain global-batch losses (B×B logits); softmax_tiled (Inf-CL style)
        # | sigmoid_ring: ring over the batch axes, O(b·D + tile²) memory per device.
        "name": "softmax",
        "tile_size": 1024,  # tile edge of softmax_tiled / sigmoid_ring (row tile of cloob_tiled)
        # cloob | cloob_tiled: CLOOB (bigvl/losses/cloob.py), 1/τ = the model's logit scale; β of the Hopfield
        # retrieval (ml-jku/cloob's default 14.3, also its inverse-τ default).
        "cloob_beta": cloob.CODE_BETA,
        # With T > 1 texts per image: the mean (or `text_weights`-weighted sum) of per-text
        # InfoNCE terms, or one loss where every text of an image is a positive.
        "multi_text": "per_text",
        "text_weights": [],  # [] = equal weights (mean); else one weight per text
        # total = contrastive_weight · contrastive + caption_weight · caption cross-entropy (captioners)
        "contrastive_weight": 1.0,
        "caption_weight": 2.0,  # CoCa's 1 : 2
        "pca_dim": 32,  # Long-CLIP: principal components kept for the short-caption term
        "alip_momentum": 0.99,  # ALIP: EMA momentum of the gate similarities
        # DreamLIP's subcaption grouping loss (0 = off): each text vs the pooling of its image's
        # patch embeddings weighted by min-max-normalised similarity, weights < threshold dropped.
        "grouping_weight": 0.0,
        "grouping_threshold": 0.1,  # DreamLIP's sgl_delta
        # MobileCLIP: (1 - w) · contrastive + w · KD against the teacher embeddings stored in the
        # shards (data/add_teacher_embeddings.py); 0 = off. MobileCLIP uses w = 0.75 at B/16.
        "distill_weight": 0.0,
        # SyCoCa's text-guided masked image modelling term (bigvl/models/sycoca.py; 0 = off): the mean squared
        # error per masked patch value; needs model.decoder.mim_mask_ratio > 0 (and the reverse).
        "mim_weight": 0.0,
        # kd: MobileCLIP's KL between the teacher's and the student's similarity matrices; cosine: TULIP's
        # 1 − cos(student text, teacher text) (bigvl/losses/long_text.py; distill_weight 1 = distillation only).
        "distill_kind": "kd",
        "fix_clip_mask_ratio": 0.5,  # FIX-CLIP: fraction of image patches masked for the short-text branch
        # SigLIP 2's LocCa decoder term (bigvl/losses/locca.py; 0 = off); needs model.locca.depth > 0 (and the reverse).
        # SigLIP 2 adds the decoder loss to the sigmoid loss: 1.0.
        "locca_weight": 0.0,
        # SigLIP 2's self-distillation (SILC / TIPS; bigvl/losses/self_distill.py, bigvl/train/teacher.py): the
        # student's M local crops vs the EMA teacher's global view, through DINO's prototype head. 0 = off.
        "self_distill": ml_collections.ConfigDict({
            "weight": 0.0,  # SigLIP 2 (§2.3): 1.0
            "start_fraction": 0.8,  # SigLIP 2: on for the last 20 % of training, teacher = student then
            "ema_momentum": 0.996,  # teacher ← m·teacher + (1 − m)·student; DINO's base value, SILC keeps m fixed
            "num_prototypes": 65536, "hidden_dim": 2048, "bottleneck_dim": 256,  # DINO's head
            "student_temp": 0.1, "teacher_temp": 0.04, "center_momentum": 0.9,  # DINO
            "local_crops": 8,  # SILC, SigLIP 2: 8 local views
            "local_size": 96,  # DINO / SILC at 224 px; must give a square patch grid
            "local_scale": [0.05, 0.4],  # SILC's local crop area fractions
        }),
        # SigLIP 2's masked prediction (TIPS; bigvl/losses/masked_prediction.py): 0 = off; shares the teacher,
        # head, temperatures and start step of loss.self_distill.
        "masked_prediction": ml_collections.ConfigDict({
            "weight": 0.0,  # SigLIP 2 (§2.3): 0.25
            "mask_ratio": 0.5,  # "half of the patches"
        }),
    })
