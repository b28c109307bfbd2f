"""The CoCa demo trained for length control: its caption target is "N words: caption" of varied length.

    python -m bigvl.main --config coca_length_demo --workdir workdirs/coca_length_demo
    python -m experiments.length_control --workdir workdirs/coca_length_demo   # lengths 5, 10, 20, 40

configs/coca_demo.py with a separate decoder target (`data.target_field = "mixed_lengths"`: the short
caption, a rewrite, or the first k sentences of the long caption, 3–64 words; bigvl/data/length_prefix.py)
prefixed with its word count (`data.target_length_prefix`, FlexCap), and a 96-token decoder so the
longest targets fit. The contrastive text stays the short caption. Decode with
`bigvl.caption(run, images, length=N)`. The trainer's own captioning evaluation is off (unprompted
captions start with a length the model picks); experiments.length_control scores prompted ones.
Key `steps`: total steps (evaluated once, at the end); 0 (default) = the demo's budget.
"""
from bigvl.config import load_config, parse_config_args
from bigvl.data.length_prefix import MIXED_LENGTHS


def get_config(arg: str = ""):
    steps = parse_config_args(arg, values={"steps": 0})["steps"]
    c = load_config("coca_demo")
    c.data.target_field, c.data.target_length_prefix = MIXED_LENGTHS, True
    c.model.decoder.context_length = 96
    c.evals.captioning.split = ""
    if steps:
        c.total_steps, c.ckpt_steps = steps, steps
        c.optim.warmup_steps = min(c.optim.warmup_steps, steps // 5)
    return c
