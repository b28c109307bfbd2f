"""A recaption recipe at real size: CLIP ViT-B/16 (configs/clip_b16.py) with one recipe's texts and loss.

    python -m bigvl.main --config recipe_b16:partial --workdir /mnt/runs/partial \
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \
        --config.data.tokenizer=/mnt/recap/spm_49408.model

Flags: one recipe (bigvl/recipes.py; default mix): alt, recap, mix, uniform, partial, multi,
multi_grouping, long, dual, alip, distill, distill_mix; and clip_b16's `fsdp` or `fsdp_tp`
(e.g. `recipe_b16:partial,fsdp`).
`:long` is Long-CLIP fine-tuning: it stretches a 77-position run to 248 positions and
freezes the first 20; give the run with `--config.init.workdir=/mnt/runs/clip_b16`
(Long-CLIP fine-tunes 1 epoch of ShareGPT4V-1M at batch 2048, lr 1e-6: set here).
The records need the caption fields the recipe reads (short, long, rewrite_0..3);
`:distill`, `:distill_mix` need shards that carry a teacher's embeddings
(data/add_teacher_embeddings.py).
The long-caption recipes (long, tulip_distill, tulip, fix_clip) also report the long-caption suites'
long-text retrieval (Urban1k, DOCCI, DCI) at each eval: give --config.evals.data_dir=/mnt/evals
(bigvl/evaluators/suites/long_captions.py for the layouts).
"""
from bigvl.config import load_config, parse_config_args
from bigvl.recipes import RECIPES, apply_recipe, long_finetune_keys

MESHES = ("fsdp", "fsdp_tp")
LONG_CAPTION_RECIPES = ("long", "tulip_distill", "tulip", "fix_clip")


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=RECIPES + MESHES)
    recipe = args.one_of(RECIPES, "mix")
    c = load_config(f"clip_b16:{args.one_of(MESHES, '')}")
    apply_recipe(c, recipe, "b16")
    if recipe in LONG_CAPTION_RECIPES:
        c.evals.suites = ",".join(filter(None, [c.evals.suites, "urban1k,docci,dci"]))
    if recipe == "long":
        long_finetune_keys(c)  # set --config.init.workdir to the 77-position run
        c.batch_size, c.total_steps = 2048, 500
        c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 1e-6, 200, 1e-2
    return c
