"""CLIPS ViT-L/14 on Recap-DataComp-style data: CLIP-L/14 + an alt-text-conditioned captioner.

    python -m bigvl.main --config clips_l14 --workdir /mnt/runs/clips_l14 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Towers as open_clip ViT-L-14 (427.6M params): ViT-L/14 @224, text width 768 / 12 layers /
12 heads, embed 768. Contrastive: partial synthetic caption (whole sentences within 32
tokens of `long`) + the alt-text as a second positive, 0.5 · (InfoNCE + InfoNCE).
Generative: 6-layer cross-attention decoder (width 768) over [image tokens ; encoded
alt-text] predicting the full long caption (128 tokens). CLIPS reports for L/14 on
Recap-DataComp-1B: ImageNet zero-shot 78.5, COCO R@1 75.5 (I→T) / 55.6 (T→I).
Starts from configs/clip_b16.py (schedule, batch, optimizer, bf16, remat, flags `:fsdp`/`:fsdp_tp`).
"""
from bigvl.config import load_config
from bigvl.recipes import apply_recipe


def get_config(arg: str = ""):
    c = load_config(f"clip_b16:{arg}")
    apply_recipe(c, "partial", "b16")  # CLIPS's contrastive texts: partial long caption + alt-text
    c.data.target_field = "long"

    m = c.model
    m.kind = "clips"
    m.image.variant = "L/14"
    m.text.update(variant="custom", width=768, depth=12, num_heads=12, mlp_dim=3072)
    m.decoder.update(depth=6, context_length=128, cond_slot=1)
    m.embed_dim = 768
    # nn.scan over the tower layers: the train step compiles in 30 s instead of 49 s on a CPU host
    # (python -m benchmarks.compile_time --suite clips_l14); params stored stacked.
    m.scan_layers = True

    c.evals.captioning.update(field="long", max_length=128)  # no split: `--config.evals.captioning.split=...`
    return c
