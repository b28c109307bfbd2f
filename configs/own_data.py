"""CLIP on your own recaptioned data, converted by data/build_shards.py (README: "Train on your own recaptioned data").

    python data/build_shards.py --images '/data/dl/*.tar' --out /data/own \
        --captions recap.parquet --join url --caption short=re_caption \
        --captions dreamlip.csv --join url --caption long=longSV_captions
    python data/train_tokenizer.py --shards '/data/own/train-*.array_record' --vocab_size 2048 \
        --out /data/own/tokenizer.model
    BIGVL_OWN_DATA=/data/own python -m bigvl.main --config configs/own_data.py --workdir workdirs/own

Reads $BIGVL_OWN_DATA/train-*.array_record and $BIGVL_OWN_DATA/tokenizer.model (default
directory ~/data/own_bigvl); override with --config.data.train_paths / --config.data.tokenizer.
Caption names are those given to --caption: `short` (a one-line recaption) and `long` (a
detailed one) here. Default: a small CLIP for a CPU (64 px, 4 layers), caption mix p = 0.5 of
`short` and the alt-text. Variants after a colon: `b16` (ViT-B/16 towers, batch 4096, bf16,
32k-piece tokenizer), `recap` (the `short` caption only), `multi` (DreamLIP: 3 sentences of
`long` + the alt-text), `alt` (alt-text only, the baseline). No evaluation split is set: point
evals.retrieval at a held-out conversion (`--config.evals.retrieval=/data/own_eval/train-00000-000.array_record`;
evals.retrieval_field = a caption all its records have, or `alt`).
"""
import os

from bigvl.config import base_config, config_variants


def get_config(arg: str = ""):
    c = base_config()
    variants = config_variants(arg, ("b16", "recap", "multi", "alt"))
    data_dir = os.path.expanduser(os.environ.get("BIGVL_OWN_DATA", "~/data/own_bigvl"))
    c.data.train_paths = [os.path.join(data_dir, "train-*.array_record")]
    c.data.tokenizer = os.path.join(data_dir, "tokenizer.model")
    c.data.caption_strategy = "mix"
    c.data.mix_p = 0.5
    c.data.caption_field = "short"
    if "recap" in variants:
        c.data.caption_strategy = "recap"
    if "multi" in variants:
        c.data.caption_strategy, c.data.multi_field, c.data.multi_k = "multi", "long", 3
    if "alt" in variants:
        c.data.caption_strategy = "alt"
    c.evals.retrieval_field = "alt"

    if "b16" in variants:  # base_config's towers are open_clip ViT-B-16's
        c.total_steps, c.batch_size = 100_000, 4096
        c.log_steps, c.eval_steps, c.ckpt_steps, c.keep_ckpts = 100, 5_000, 2_000, 3
        c.data.min_crop_scale = 0.4
        c.data.num_workers = 16
        c.model.text.update(width=512, num_heads=8, mlp_dim=2048)
        c.model.text.vocab_size = 32_000
        c.model.dtype = "bfloat16"
        c.model.remat = "dots_saveable"
        c.optim.warmup_steps = 5_000
        c.evals.batch_size = 1024
        return c

    c.total_steps, c.batch_size = 2_000, 64
    c.log_steps, c.eval_steps, c.ckpt_steps = 20, 500, 500
    c.model.image.update(variant="custom", image_size=64, patch_size=8, width=128, depth=4, num_heads=4,
                         mlp_dim=512, pool="gap")
    c.model.text.update(variant="custom", vocab_size=2048, context_length=32, width=128, depth=4, num_heads=4,
                        mlp_dim=512)
    c.model.embed_dim = 128
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 1e-3, 100, 0.05
    c.evals.batch_size = 256
    return c
