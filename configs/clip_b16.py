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
from bigvl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    variants = set(filter(None, arg.split(",")))
    c.total_steps = 390_000  # ~12.8B samples seen at batch 32k
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
    c.data.min_crop_scale = 0.4
    c.data.num_workers = 16

    c.model.image.variant = "B/16"
    c.model.image.image_size = 224
    c.model.image.pool = "cls"
    c.model.image.patch_bias = False
    c.model.image.ln_pre = True
    c.model.text.vocab_size = 49408
    c.model.text.context_length = 77
    c.model.text.variant = "B"
    c.model.text.width = 512
    c.model.text.num_heads = 8
    c.model.text.mlp_dim = 2048
    c.model.text.causal = True
    c.model.text.pool = "eos"
    c.model.embed_dim = 512
    c.model.dtype = "bfloat16"
    c.model.remat = "dots_saveable"

    c.optim.lr = 5e-4
    c.optim.warmup_steps = 10_000
    c.optim.weight_decay = 0.2
    c.optim.b2 = 0.98

    if "fsdp" in variants:
        c.mesh.data, c.mesh.fsdp = -1, 8
    if "fsdp_tp" in variants:
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 8, 4
    c.evals.batch_size = 1024
    return c
