"""CoCa ViT-B/16 (open_clip coca_ViT-B-32 sizes at patch 16) on recaptioned ArrayRecord data.

    python -m bigvl.main --config configs/coca_b16.py --workdir /mnt/runs/coca_b16 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Image: ViT-B/16 @224 (patch tokens to two attentional poolers: 256 queries feed the
decoder, 1 gives the contrastive embedding). Text: 12 unimodal causal layers (width 512,
8 heads) with a CLS token, then 12 multimodal layers (causal self-attention +
cross-attention); embed 512. Loss 1 · InfoNCE + 2 · captioning cross-entropy; contrastive
text = a synthetic caption mixed with the alt-text (p = 0.2), caption target = the short
synthetic caption (`data.target_field`). Variant `:fsdp` shards params over fsdp = 8.
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
    c.data.caption_strategy = "mix"
    c.data.mix_p = 0.2
    c.data.caption_field = "short"
    c.data.target_field = "short"
    c.data.min_crop_scale = 0.4
    c.data.num_workers = 16

    m = c.model
    m.kind = "coca"
    m.image.update(variant="B/16", image_size=224, pool="cls", patch_bias=False, ln_pre=True)
    m.text.update(variant="B", vocab_size=49408, context_length=76, width=512, num_heads=8, mlp_dim=2048,
                  depth=12)
    m.decoder.update(depth=12, context_length=76, num_queries=256, pooler_heads=8)
    m.embed_dim = 512
    m.dtype = "bfloat16"
    m.remat = "dots_saveable"

    c.optim.lr = 5e-4
    c.optim.warmup_steps = 10_000
    c.optim.weight_decay = 0.2
    c.optim.b2 = 0.98
    c.optim.no_decay = list(c.optim.no_decay) + [".*query.*"]
    if "fsdp" in variants:
        c.mesh.data, c.mesh.fsdp = -1, 8
    c.evals.batch_size = 1024
    c.evals.captioning_max_length = 32
    return c
