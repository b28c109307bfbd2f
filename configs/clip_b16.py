"""CLIP ViT-B/16 (open_clip ViT-B-16 architecture, 149.6M params) on recaptioned ArrayRecord data.

    python -m bigvl.main --config clip_b16 --workdir /mnt/runs/clip_b16 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Batch 32k, AdamW (lr 5e-4, wd 0.2, β2 0.98), 10k warmup, cosine; softmax loss over the
global batch; caption mix p = 0.2 (Recap-DataComp-1B / CLIPS). Flag `clip_b16:fsdp` shards
params over an fsdp axis of 8 (rest data); `:fsdp_tp` adds tensor = 4 (configs/b16_base.py).
Fine-tuning flags (bigvl/fine_tuning.py, with --config.init.workdir=RUN): `:lit` locks the image
tower, `:lora` trains rank-8 adapters alone; e.g. `clip_b16:lit,fsdp`.

Data, tokenizer and workdir paths are local files (on a pod: a gcsfuse mount shared by
the workers, so every host sees the same checkpoints).
"""
from bigvl.config import load_config
from bigvl.fine_tuning import apply_fine_tuning, split_mode


def get_config(arg: str = ""):
    # batch, cadence, bf16, remat, mesh flags; base_config's defaults are open_clip ViT-B-16's towers,
    # AdamW (lr 5e-4, wd 0.2, β2 0.98), mix p 0.2
    mode, arg = split_mode(arg)  # :lit / :lora (bigvl/fine_tuning.py), the rest for b16_base
    c = load_config(f"b16_base:{arg}")
    c.total_steps = 390_000  # ~12.8B samples seen at batch 32k
    # data.train_paths / data.tokenizer (≤ 49408 pieces) come from the command line
    c.model.text.update(width=512, num_heads=8, mlp_dim=2048)  # open_clip's text tower: narrower than ViT-B
    if mode:
        apply_fine_tuning(c, mode)
    return c
