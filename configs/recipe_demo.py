"""A recaption recipe on the demo world: the demo model and budget, one recipe's texts and loss.

    python -m bigvl.main --config configs/recipe_demo.py:partial --workdir workdirs/partial
    python -m bigvl.tools.ablation   # every recipe × 3 seeds → docs/ablation.{md,csv,png}

Recipes (bigvl/recipes.py): alt, recap, mix, uniform, partial, multi, multi_grouping, long, dual,
alip, distill, distill_mix.
Optional second argument: total steps, e.g. `:partial,300`.
`:distill` and `:distill_mix` read the world's train shards with a teacher's embeddings
added, from `teacher_shards_dir()`; `python -m bigvl.tools.ablation --recipes distill` builds
them (a recap teacher, then data/add_teacher_embeddings.py), or build them yourself:
    python -m bigvl.main --config configs/recipe_demo.py:recap,500 --workdir workdirs/teacher
    python data/add_teacher_embeddings.py --teacher workdirs/teacher \
        --in '~/.cache/bigvl/synthetic_world_seed0/train-*.array_record' \
        --out ~/.cache/bigvl/synthetic_world_seed0_teacher
"""
import os

from bigvl.config import load_config
from bigvl.recipes import apply_recipe


def teacher_shards_dir(world_dir: str) -> str:
    """Where the demo world's train shards with teacher embeddings live (`distill`, `distill_mix`)."""
    return world_dir.rstrip("/") + "_teacher"


def get_config(arg: str = "mix"):
    name, _, steps = arg.partition(",")
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py"))
    apply_recipe(c, name, "demo")
    if name in ("distill", "distill_mix"):
        c.data.train_paths = [os.path.join(teacher_shards_dir(c.world.dir), "train-*.array_record")]
    c.report = False
    if steps:
        c.total_steps = int(steps)
        c.eval_steps = 0
        c.ckpt_steps = c.total_steps
        c.optim.warmup_steps = min(c.optim.warmup_steps, c.total_steps // 5)
    return c
