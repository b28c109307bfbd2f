"""CoCa ViT-B/16 (open_clip coca_ViT-B-32 sizes at patch 16) on recaptioned ArrayRecord data.

    python -m bigvl.main --config coca_b16 --workdir /mnt/runs/coca_b16 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Image: ViT-B/16 @224 (patch tokens to two attentional poolers: 256 queries feed the
decoder, 1 gives the contrastive embedding). Text: 12 unimodal causal layers (width 512,
8 heads) with a CLS token, then 12 multimodal layers (causal self-attention +
cross-attention); embed 512. Loss 1 · InfoNCE + 2 · captioning cross-entropy; contrastive
text = a synthetic caption mixed with the alt-text (p = 0.2), caption target = the short
synthetic caption (`data.target_field`). Starts from configs/clip_b16.py (schedule, batch, optimizer,
bf16, remat, flags `:fsdp`/`:fsdp_tp`).
"""
from bigvl.config import load_config


def get_config(arg: str = ""):
    c = load_config(f"clip_b16:{arg}")
    c.data.target_field = "short"

    m = c.model
    m.kind = "coca"
    m.text.update(context_length=76, depth=12)  # + the CLS token = 77 positions
    m.decoder.update(depth=12, context_length=76, num_queries=256, pooler_heads=8)

    c.optim.no_decay = list(c.optim.no_decay) + [".*query.*"]
    return c
