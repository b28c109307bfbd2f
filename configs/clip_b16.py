"""CLIP ViT-B/16 (open_clip ViT-B-16 architecture, 149.6M params) on recaptioned ArrayRecord data.

    python -m bigvl.main --config configs/clip_b16.py --workdir /mnt/runs/clip_b16 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Batch 32k, AdamW (lr 5e-4, wd 0.2, β2 0.98), 10k warmup, cosine; softmax loss over the
global batch; caption mix p = 0.2 (Recap-DataComp-1B / CLIPS). Variant `:fsdp` shards
params over an fsdp axis of 8 (rest data); `:fsdp_tp` adds tensor = 4.

Data, tokenizer and workdir paths are local files (on a pod: a gcsfuse mount shared by
the workers, so every host sees the same checkpoints).
"""
from bigvl.config import base_config, config_variants


def get_config(arg: str = ""):
    c = base_config()  # its defaults are open_clip ViT-B-16's towers, AdamW (lr 5e-4, wd 0.2, β2 0.98), mix p 0.2
    variants = config_variants(arg, ("fsdp", "fsdp_tp"))
    c.total_steps = 390_000  # ~12.8B samples seen at batch 32k
    c.batch_size = 32_768
    c.log_steps = 100
    c.eval_steps = 5_000
    c.ckpt_steps = 2_000
    c.keep_ckpts = 3

    # data.train_paths / data.tokenizer (≤ 49408 pieces) come from the command line
    c.data.min_crop_scale = 0.4
    c.data.num_workers = 16

    c.model.text.update(width=512, num_heads=8, mlp_dim=2048)  # open_clip's text tower: narrower than ViT-B
    c.model.dtype = "bfloat16"
    c.model.remat = "dots_saveable"
    c.optim.warmup_steps = 10_000

    if "fsdp" in variants:
        c.mesh.data, c.mesh.fsdp = -1, 8
    if "fsdp_tp" in variants:
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 8, 4
    c.evals.batch_size = 1024
    return c
