"""CLIPS ViT-L/14 on Recap-DataComp-style data: CLIP-L/14 + an alt-text-conditioned captioner.

    python -m bigvl.main --config configs/clips_l14.py --workdir /mnt/runs/clips_l14 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Towers as open_clip ViT-L-14 (427.6M params): ViT-L/14 @224, text width 768 / 12 layers /
12 heads, embed 768. Contrastive: partial synthetic caption (whole sentences within 32
tokens of `long`) + the alt-text as a second positive, 0.5 · (InfoNCE + InfoNCE).
Generative: 6-layer cross-attention decoder (width 768) over [image tokens ; encoded
alt-text] predicting the full long caption (128 tokens). CLIPS reports for L/14 on
Recap-DataComp-1B: ImageNet zero-shot 78.5, COCO R@1 75.5 (I→T) / 55.6 (T→I).
Variant `:fsdp` shards params over fsdp = 8.
"""
from bigvl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    variants = set(filter(None, arg.split(",")))
    c.total_steps = 390_000
    c.batch_size = 32_768
    c.log_steps = 100
    c.eval_steps = 5_000
    c.ckpt_steps = 2_000
    c.keep_ckpts = 3

    c.data.train_paths = []  # user-supplied ArrayRecord shards of recaptioned examples
    c.data.tokenizer = ""  # sentencepiece model with ≤ 49408 pieces
    c.data.caption_strategy = "partial"
    c.data.partial_max_tokens = 32
    c.data.partial_field = "long"
    c.data.partial_with_alt = True
    c.data.target_field = "long"
    c.data.min_crop_scale = 0.4
    c.data.num_workers = 16
    c.loss.multi_text = "per_text"

    m = c.model
    m.kind = "clips"
    m.image.update(variant="L/14", image_size=224, pool="cls", patch_bias=False, ln_pre=True)
    m.text.update(variant="custom", vocab_size=49408, context_length=77, width=768, depth=12, num_heads=12,
                  mlp_dim=3072)
    m.decoder.update(depth=6, context_length=128, cond_slot=1)
    m.embed_dim = 768
    m.dtype = "bfloat16"
    m.remat = "dots_saveable"

    c.optim.lr = 5e-4
    c.optim.warmup_steps = 10_000
    c.optim.weight_decay = 0.2
    c.optim.b2 = 0.98
    if "fsdp" in variants:
        c.mesh.data, c.mesh.fsdp = -1, 8
    c.evals.batch_size = 1024
    c.evals.captioning_field = "long"
    c.evals.captioning_max_length = 128
    return c
