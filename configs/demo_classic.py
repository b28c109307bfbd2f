"""The earlier demo (before the world study): the world and model that earlier figures in docs/ were measured on.

    python -m bigvl.main --config demo_classic --workdir workdirs/demo_classic

The demo (configs/demo.py) with what differed: the demo world of 1–4 rotated shapes on
textured backgrounds (cached as synthetic_world_classic_seed0), 64-px images in 8-px patches,
4 × 128 towers, 600 steps evaluated every 200, and the `mix` caption strategy (p = 0.5).
Flags as the demo's: `alt`, `mix`, `recap` (the caption strategy), `sigmoid`.
"""
from bigvl.config import load_config, parse_config_args
from bigvl.configs.demo import STRATEGIES, use_world, world_dir


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=STRATEGIES + ("sigmoid",))
    c = load_config("demo:sigmoid" if "sigmoid" in args else "demo")
    c.total_steps = 600
    c.eval_steps = 200
    c.ckpt_steps = c.eval_steps

    use_world(c, world_dir(c.world.seed, "classic"))
    c.world.scene.update(shape_scale=1.0, max_objects=4, rotation=True, textured=True, p_same_colour=0.0,
                         num_object_weights=(0.2, 0.3, 0.3, 0.2), p_caption_background=(0.7, 0.4))
    c.data.caption_strategy = args.one_of(STRATEGIES, "mix")

    c.model.image.update(image_size=64, patch_size=8, width=128, depth=4, mlp_dim=4 * 128)  # 64 tokens
    c.model.text.update(width=128, depth=4, mlp_dim=4 * 128)
    return c
