"""The CoCa demo trained for classifier-free guidance: 10 % of its captions see no image.

    python -m bigvl.main --config coca_guided_demo --workdir workdirs/coca_guided_demo
    python -m experiments.guidance --workdir workdirs/coca_guided_demo   # CIDEr-D at w = 0, 1, 2, 4

configs/coca_demo.py with `model.decoder.image_drop = 0.1` (Kornblith et al. 2023 drop the image
for a fraction of the captions; which ones is a hash of the cropped pixels, bigvl/models/guidance.py).
Decode with guidance w: `DecodeConfig(guidance=w)` (bigvl/inference/guided_decoding.py).
Key `steps`: total steps (evaluated once, at the end); 0 (default) = the demo's budget.
"""
from bigvl.config import load_config, parse_config_args


def get_config(arg: str = ""):
    steps = parse_config_args(arg, values={"steps": 0})["steps"]
    c = load_config("coca_demo")
    c.model.decoder.image_drop = 0.1
    if steps:
        c.total_steps, c.ckpt_steps = steps, steps
        c.optim.warmup_steps = min(c.optim.warmup_steps, steps // 5)
    return c
