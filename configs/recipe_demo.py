"""A recaption recipe on the demo world: the demo model and budget, one recipe's texts and loss.

    python -m bigvl.main --config configs/recipe_demo.py:partial --workdir workdirs/partial
    python -m bigvl.ablation   # every recipe × 3 seeds → docs/ablation.{md,csv,png}

Recipes (bigvl/recipes.py): alt, recap, mix, uniform, partial, multi, long, dual, alip.
Optional second argument: total steps, e.g. `:partial,300`.
"""
import os

from bigvl.config import load_config
from bigvl.recipes import apply_recipe


def get_config(arg: str = "mix"):
    name, _, steps = arg.partition(",")
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py"))
    apply_recipe(c, name, "demo")
    c.report = False
    if steps:
        c.total_steps = int(steps)
        c.eval_steps = 0
        c.ckpt_steps = c.total_steps
        c.optim.warmup_steps = min(c.optim.warmup_steps, c.total_steps // 5)
    return c
