"""The published recaption recipes, each as the config changes that make it.

`apply_recipe(config, name, scale)` sets the caption strategy, the multi-text objective
and, where the recipe needs them, the text context and the fine-tuning keys. `scale`
is "demo" (the synthetic world: captions of ≤ 90 tokens, 32-token text context) or
"b16" (real data, 77-token context). The papers' published numbers: README "Caption strategies".

    alt       alt-text only (CLIP / ALIGN baseline)
    recap     synthetic short caption only
    mix       synthetic caption with p = 0.2, else alt-text (Recap-DataComp-1B, CLIPS baseline)
    uniform   LaCLIP: alt-text or one of its rewrites, uniformly
    partial   CLIPS: whole sentences of the long caption up to K = 32 tokens + alt-text,
              0.5 · (InfoNCE(image, partial) + InfoNCE(image, alt))
    multi     DreamLIP: k sentences of the long caption + the raw alt-text; per-text
              InfoNCE mean + multi-positive term (k = 6 at b16; 3 on the demo, for compute)
    multi_grouping  DreamLIP in full: `multi` + its subcaption grouping loss (weight 1,
              threshold 0.1: each text against the similarity-weighted pooling of patches)
    long      Long-CLIP: long caption + first sentence; long-caption term + top-32-PCA
              short term; context 248 at b16 (fine-tuning a 77-position run, see
              `long_finetune_keys`), 96 on the demo (trained from scratch)
    dual      alt-text and short caption, two InfoNCE terms of weight 0.5
    alip      ALIP: `dual` texts with its EMA-normalised consistency gates
    distill   MobileCLIP: alt-text InfoNCE + KD against a teacher's stored embeddings,
              (1 − λ) · InfoNCE + λ · KD with λ = 0.75 (the shards must carry them:
              data/add_teacher_embeddings.py; on the demo, `experiments.ablation` builds them
              from a recap-trained teacher)
    distill_mix  MobileCLIP's reinforced training more fully: `mix` texts (synthetic
              caption with p = 0.2) + the same KD term (every text field has a teacher
              embedding)
    tulip_distill  TULIP stage 1: a RoPE text tower (model.text.pos_emb 'rope', context 96 on the
              demo, 248 at b16) distilled from a learned-position teacher (`init.workdir`: every
              param but the position table) with 1 − cos against the teacher's stored text
              embeddings (long captions: overlapping windows pooled, add_teacher_embeddings
              --windowed), short or long caption uniformly; contrastive weight 0, no weight decay
    tulip     TULIP stage 2: the RoPE tower tuned contrastively on [long caption, short caption],
              per-text InfoNCE (`init.workdir`: the stage-1 run)
    fix_clip  FIX-CLIP: [long, short] texts; InfoNCE(image, long) + InfoNCE(image with half its
              patches masked, short), averaged; context as `long` (regional prompts and the
              hierarchical alignment left out: docs/guides/long_captions.md)
    cloob     CLOOB: alt-text, Hopfield retrieval from the batch's image and text stores +
              InfoLOOB (loss.name cloob, β = 14.3, 1/τ starting at 14.3: ml-jku/cloob's defaults)
    flair     FLAIR: `multi` texts; text-conditioned attention pooling (4 heads) + multi-positive
              sigmoid losses, text-conditioned and global (SigLIP's scale 10 and bias −10 at init)
    coca      CoCa on the short synthetic caption (contrastive + captioning of the same text;
              on the demo the sizes of configs/coca_demo.py: 2 unimodal + 2 multimodal layers)
    sycoca    SyCoCa: `coca` + text-guided masked image modelling, the half of the patches the
              caption attends to least masked (ratio 0.5, weight 1: our choices, not the paper's)
"""
from __future__ import annotations

RECIPES = ("alt", "recap", "mix", "uniform", "partial", "multi", "multi_grouping", "long", "dual", "alip", "distill",
           "distill_mix", "cloob", "tulip_distill", "tulip", "fix_clip", "flair", "coca", "sycoca")
SCALES = ("demo", "b16")


def apply_recipe(config, name: str, scale: str = "demo") -> None:
    """Sets `config.data` / `config.loss` / context keys for recipe `name` in place.

    Raises ValueError naming the recipe (or scale) when unknown.
    """
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is not one of {RECIPES}")
    if scale not in SCALES:
        raise ValueError(f"recipe scale {scale!r} is not one of {SCALES}")
    data, loss = config.data, config.loss
    data.caption_field = "short"
    loss.multi_text, loss.text_weights, loss.grouping_weight, loss.distill_weight = "per_text", [], 0.0, 0.0
    if name in ("alt", "recap"):
        data.caption_strategy = name
    elif name == "mix":
        data.caption_strategy, data.mix_p = "mix", 0.2
    elif name == "uniform":
        data.caption_strategy = "uniform"
        data.uniform_fields = ["alt", "rewrite_0", "rewrite_1"] if scale == "demo" else \
            ["alt", "rewrite_0", "rewrite_1", "rewrite_2", "rewrite_3"]
    elif name == "partial":
        data.caption_strategy, data.partial_max_tokens, data.partial_with_alt = "partial", 32, True
        data.partial_field = "long"
    elif name in ("multi", "multi_grouping"):
        data.caption_strategy, data.multi_k, data.multi_with_raw = "multi", 3 if scale == "demo" else 6, True
        data.multi_field, data.multi_raw_field = "long", "alt"
        loss.multi_text = "per_text+multi_positive"
        if name == "multi_grouping":
            loss.grouping_weight, loss.grouping_threshold = 1.0, 0.1
    elif name == "long":
        data.caption_strategy, data.long_field = "long", "long"
        loss.multi_text, loss.pca_dim = "long_clip", 32
        config.model.text.context_length = 96 if scale == "demo" else 248
    elif name == "dual":
        data.caption_strategy = "dual"
        loss.text_weights = [0.5, 0.5]
    elif name == "alip":
        data.caption_strategy, loss.multi_text = "dual", "alip"
    elif name == "distill":
        data.caption_strategy, loss.distill_weight = "alt", 0.75
    elif name == "distill_mix":
        data.caption_strategy, data.mix_p, loss.distill_weight = "mix", 0.2, 0.75
    elif name in ("tulip_distill", "tulip", "fix_clip"):
        long_caption_recipe(config, name, scale)
    elif name == "cloob":
        data.caption_strategy, loss.name, loss.cloob_beta = "alt", "cloob", 14.3
        config.model.temperature_init = 14.3
    elif name == "flair":
        data.caption_strategy, data.multi_k, data.multi_with_raw = "multi", 3 if scale == "demo" else 6, True
        data.multi_field, data.multi_raw_field = "long", "alt"
        loss.name, loss.multi_text = "sigmoid", "flair"
        config.model.update(flair_pool_heads=4, temperature_init=10.0, bias_init=-10.0)
    elif name in ("coca", "sycoca"):
        data.caption_strategy, config.model.kind = "recap", "coca"
        if scale == "demo":
            config.model.text.depth = 2
            config.model.decoder.update(depth=2, context_length=32, num_queries=32, pooler_heads=4)
        if name == "sycoca":
            config.model.decoder.mim_mask_ratio, loss.mim_weight = 0.5, 1.0


def long_finetune_keys(config) -> None:
    """Long-CLIP fine-tuning from a 77-position run (`init.workdir`, given on the command line):
    stretch its table to the context, freeze 20 rows."""
    config.init.stretch_keep = 20
    config.optim.freeze_text_positions = 20


def long_caption_recipe(config, name: str, scale: str) -> None:
    """tulip_distill | tulip | fix_clip (see the module docstring): texts, loss, positions, context."""
    data, loss, text = config.data, config.loss, config.model.text
    text.context_length = 96 if scale == "demo" else 248
    if name == "tulip_distill":
        data.caption_strategy, data.uniform_fields = "uniform", ["short", "long"]
        loss.distill_weight, loss.distill_kind = 1.0, "cosine"
        config.optim.weight_decay = 0.0  # the image tower gets no gradient: keep it as the teacher's
    else:  # [long caption, short caption] per image
        data.caption_strategy, data.multi_k, data.multi_with_raw = "multi", 1, True
        data.multi_field, data.multi_raw_field = "short", "long"
        loss.multi_text = "fix_clip" if name == "fix_clip" else "per_text"
    if name != "fix_clip":
        text.pos_emb = "rope"
