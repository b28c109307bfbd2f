"""The CLIPS demo: CLIP + an alt-text-conditioned captioner of the long caption, on a CPU in minutes.

    python -m bigvl.main --config clips_demo --workdir workdirs/clips_demo

Contrastive: the image against a partial long caption (whole sentences within 32 tokens,
strategy `partial`) and the alt-text as a second positive, 0.5 · (InfoNCE + InfoNCE).
Generative: a decoder that sees the image tokens and the encoded alt-text writes the
full long caption (`data.target_field = "long"`, up to 96 tokens); loss weights 1 : 2.
Image and text towers are those of configs/demo.py, so `demo` (CLIP)
is the baseline. Evaluates zero-shot, retrieval and CIDEr-D of the long captions.
"""
from bigvl.config import load_config, parse_config_args
from bigvl.recipes import apply_recipe


def get_config(arg: str = ""):
    parse_config_args(arg)  # no arguments: any is an error
    c = load_config("demo")  # world, towers, optim
    c.eval_steps = 0
    c.ckpt_steps = 300
    apply_recipe(c, "partial", "demo")  # CLIPS's contrastive texts: partial long caption + alt-text
    c.data.target_field = "long"

    c.model.kind = "clips"
    c.model.decoder.update(depth=2, context_length=96, cond_slot=1)

    c.evals.long_retrieval.split = ""
    c.evals.hard_negatives.split = ""
    c.evals.pointing.split = ""  # two-tower patch embeddings only
    c.evals.captioning = dict(type="captioning", split=c.evals.retrieval.split, field="long", max_length=96)
    return c
