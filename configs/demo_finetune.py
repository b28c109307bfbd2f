"""Fine-tune a trained demo run on a shifted caption distribution: the long captions (CPU, minutes).

    python -m bigvl.main --config demo --workdir workdirs/demo
    python -m bigvl.main --config demo_finetune:lit --workdir workdirs/demo_lit --config.init.workdir=workdirs/demo

The demo trains on the short synthetic captions; this trains on the long multi-sentence ones
(truncated to the 32-token context) for 300 steps, and evaluates on the demo's suites, where
`long_retrieval` (long captions as queries) is the target distribution and zero-shot / short
retrieval measure what is kept. Flags: `full` (default, every param), `lit` (image tower
locked), `lora` (rank-8 adapters alone, bigvl/fine_tuning.py); `steps=N` changes the length.
experiments/fine_tune.py runs the three side by side (docs/results/fine_tuning.md).
"""
from bigvl.config import load_config, parse_config_args
from bigvl.fine_tuning import MODES, apply_fine_tuning

LR = {"full": 2e-4, "lit": 5e-4, "lora": 1e-3}  # adapters from zero need a larger step than full weights


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=MODES, values={"steps": 300})
    mode = args.one_of(MODES, "full")
    c = load_config("demo")
    c.total_steps = args["steps"]
    c.eval_steps = 0  # at the end only
    c.ckpt_steps = c.total_steps
    c.report = False
    c.data.caption_strategy = "recap"
    c.data.caption_field = "long"
    c.optim.lr = LR[mode]
    c.optim.warmup_steps = 20
    apply_fine_tuning(c, mode, lora_rank=8, lora_alpha=16.0)
    return c
