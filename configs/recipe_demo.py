"""A recaption recipe on the demo world: the demo model and budget, one recipe's texts and loss.

    python -m bigvl.main --config recipe_demo:partial --workdir workdirs/partial
    python -m experiments.ablation   # every recipe × 3 seeds → docs/results/ablation_runs.{md,csv,png}

Flags: one recipe (bigvl/recipes.py; default mix): alt, recap, mix, uniform, partial, multi,
multi_grouping, long, dual, alip, distill, distill_mix, cloob, flair, coca, sycoca. Key `steps`: total steps (evaluated
once, at the end), e.g. `recipe_demo:partial,steps=300`; 0 (default) = the demo's budget.
`:distill` and `:distill_mix` read the world's train shards with a teacher's embeddings
added, from `teacher_shards_dir()`; `python -m experiments.ablation --recipes distill` builds
them (a recap teacher, then data/add_teacher_embeddings.py), or build them yourself:
    python -m bigvl.main --config recipe_demo:recap,steps=500 --workdir workdirs/teacher
    python data/add_teacher_embeddings.py --teacher workdirs/teacher \
        --in '~/.cache/bigvl/synthetic_world_seed0/train-*.array_record' \
        --out ~/.cache/bigvl/synthetic_world_seed0_teacher
"""
import os

from bigvl.config import load_config, parse_config_args
from bigvl.recipes import RECIPES, apply_recipe


def teacher_shards_dir(world_dir: str) -> str:
    """Where the demo world's train shards with teacher embeddings live (`distill`, `distill_mix`)."""
    return world_dir.rstrip("/") + "_teacher"


def windowed_teacher_shards_dir(world_dir: str) -> str:
    """Where the demo world's train shards with a teacher's windowed short/long caption embeddings live
    (`tulip_distill`; `python -m experiments.ablation --recipes tulip` builds them)."""
    return world_dir.rstrip("/") + "_teacher_windowed"


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=RECIPES, values={"steps": 0})
    recipe, steps = args.one_of(RECIPES, "mix"), args["steps"]
    c = load_config("demo")
    apply_recipe(c, recipe, "demo")
    if recipe in ("distill", "distill_mix"):
        c.data.train_paths = [os.path.join(teacher_shards_dir(c.world.dir), "train-*.array_record")]
    if recipe == "tulip_distill":  # TULIP stage 1 (init.workdir: the teacher, set by experiments.ablation)
        c.data.train_paths = [os.path.join(windowed_teacher_shards_dir(c.world.dir), "train-*.array_record")]
    c.report = False
    if c.model.kind != "two_tower":  # coca, sycoca: no patch embeddings to point with; CIDEr-D of greedy captions
        c.evals.pointing.split = ""
        c.evals.captioning = dict(type="captioning", split=c.evals.retrieval.split)
    if steps:
        c.total_steps = steps
        c.eval_steps = 0
        c.ckpt_steps = c.total_steps
        c.optim.warmup_steps = min(c.optim.warmup_steps, c.total_steps // 5)
    return c
