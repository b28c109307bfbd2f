"""CLIP on your own recaptioned data, converted by data/build_shards.py (docs/guides/own_data.md).

    python data/build_shards.py --images '/data/dl/*.tar' --out /data/own \
        --captions recap.parquet --join url --caption short=re_caption \
        --captions dreamlip.csv --join url --caption long=longSV_captions
    python data/train_tokenizer.py --shards '/data/own/train-*.array_record' --vocab_size 2048 \
        --out /data/own/tokenizer.model
    BIGVL_OWN_DATA=/data/own python -m bigvl.main --config own_data --workdir workdirs/own

Reads $BIGVL_OWN_DATA/train-*.array_record and $BIGVL_OWN_DATA/tokenizer.model (default
directory ~/data/own_bigvl); override with --config.data.train_paths / --config.data.tokenizer.
Caption names are those given to --caption: `short` (a one-line recaption) and `long` (a
detailed one) here. Default: a small CLIP for a CPU (64 px, 4 layers), caption mix p = 0.5 of
`short` and the alt-text. Flags after a colon: `b16` (configs/clip_b16.py's towers and settings,
batch 4096, 100k steps, 32k-piece tokenizer), `recap` (the `short` caption only), `multi` (DreamLIP: 3 sentences of
`long` + the alt-text), `alt` (alt-text only, the baseline). No evaluation split is set: point
the evals.retrieval entry at a held-out conversion
(`--config.evals.retrieval.split=/data/own_eval/train-00000-000.array_record`; its field,
evals.retrieval.field = a caption all its records have, or `alt`).
"""
import os

from bigvl.config import base_config, load_config, parse_config_args

STRATEGIES = ("recap", "multi", "alt")  # default: mix


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=("b16",) + STRATEGIES)
    if "b16" in args:  # clip_b16's towers and settings (configs/b16_base.py), a smaller batch and budget
        c = load_config("clip_b16")
        c.total_steps, c.batch_size = 100_000, 4096
        c.model.text.vocab_size = 32_000
        c.optim.warmup_steps = 5_000
    else:  # a small CLIP for a CPU
        c = base_config()
        c.total_steps, c.batch_size = 2_000, 64
        c.log_steps, c.eval_steps, c.ckpt_steps = 20, 500, 500
        c.model.image.update(variant="custom", image_size=64, patch_size=8, width=128, depth=4, num_heads=4,
                             mlp_dim=512, pool="gap")
        c.model.text.update(variant="custom", vocab_size=2048, context_length=32, width=128, depth=4, num_heads=4,
                            mlp_dim=512)
        c.model.embed_dim = 128
        c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 1e-3, 100, 0.05
        c.evals.batch_size = 256

    data_dir = os.path.expanduser(os.environ.get("BIGVL_OWN_DATA", "~/data/own_bigvl"))
    c.data.train_paths = [os.path.join(data_dir, "train-*.array_record")]
    c.data.tokenizer = os.path.join(data_dir, "tokenizer.model")
    c.data.caption_strategy = args.one_of(STRATEGIES, "mix")
    c.data.mix_p = 0.5
    c.data.caption_field = "short"
    if c.data.caption_strategy == "multi":
        c.data.multi_field, c.data.multi_k = "long", 3
    c.evals.retrieval.field = "alt"
    return c
