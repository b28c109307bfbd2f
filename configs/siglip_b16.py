"""SigLIP B/16 (big_vision architecture, ~203M params) with the sigmoid loss.

    python -m bigvl.main --config siglip_b16 --workdir /mnt/runs/siglip_b16 \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_32k.model

MAP-pooled ViT-B/16, bidirectional text tower (vocab 32000, 64 tokens, last-token pooling),
t = log 10 and b = −10 at init, batch 32k, AdamW lr 1e-3, wd 1e-4, rsqrt schedule.
Flags `:fsdp`, `:fsdp_tp` as configs/b16_base.py.
Fine-tuning flags (bigvl/fine_tuning.py, with --config.init.workdir=RUN): `:lit` locks the image
tower, `:lora` trains rank-8 adapters alone; e.g. `siglip_b16:lit,fsdp`.

Data, tokenizer and workdir paths are local files (on a pod: a gcsfuse mount shared by
the workers, so every host sees the same checkpoints).
"""
from bigvl.config import load_config
from bigvl.fine_tuning import apply_fine_tuning, split_mode


def get_config(arg: str = ""):
    mode, arg = split_mode(arg)  # :lit / :lora (bigvl/fine_tuning.py), the rest for b16_base
    c = load_config(f"b16_base:{arg}")  # batch 32k, cadence, bf16, remat, 10k warmup, mesh flags
    c.total_steps = 300_000

    c.model.image.pool = "map"
    c.model.image.patch_bias = True
    c.model.image.ln_pre = False
    c.model.image.proj = False  # big_vision: the MAP head output is the embedding (out_dim None)
    c.model.text.vocab_size = 32000
    c.model.text.context_length = 64
    c.model.text.causal = False
    c.model.text.pool = "last"
    c.model.text.proj_bias = True
    c.model.embed_dim = 768
    c.model.temperature_init = 10.0
    c.model.bias_init = -10.0
    c.model.max_logit_scale = 0.0  # big_vision does not cap t

    c.loss.name = "sigmoid"
    c.optim.lr = 1e-3
    c.optim.schedule = "rsqrt"
    c.optim.weight_decay = 1e-4
    c.optim.b2 = 0.95
    if mode:
        apply_fine_tuning(c, mode)
    return c
