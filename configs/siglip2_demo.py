"""SigLIP 2's recipe on the synthetic world, CPU-sized: the demo's SigLIP plus the LocCa decoder.

    python -m bigvl.main --config siglip2_demo:siglip_locca --workdir workdirs/siglip2_demo

Stages (one flag; the study experiments/siglip2.py runs all three at equal steps):
- `:siglip`        the demo's SigLIP (configs/demo.py `:sigmoid`), the same evaluators as below;
- `:siglip_locca`  + SigLIP 2's LocCa decoder on the un-pooled image tokens (bigvl/models/locca.py),
                   captioning, referring expressions and grounded captions (bigvl/data/locca.py);
- `:siglip2`       + self-distillation and masked prediction for the last 20 % of training
                   (bigvl/losses/self_distill.py, masked_prediction.py), at CPU size (8 local crops of 16 px,
                   a 1,024-prototype head).

The world is the demo's (configs/demo.py): the LocCa targets come from the `extras.scene` every
train record already carries, so the world, its shards and the demo's numbers are unchanged.
Evaluators beside the demo's: `refexp` (box IoU ≥ 0.5 from the decoder, bigvl/evaluators/refexp.py)
and `dense` (a linear probe of the frozen patch features onto the scenes' object masks, mIoU,
bigvl/evaluators/dense.py), both on the retrieval split.
"""
from bigvl.config import parse_config_args
from bigvl.configs import demo

# The stages of SigLIP 2's recipe as config switches (also read by configs/siglip2_b16.py):
#   siglip        the sigmoid loss alone (model.locca.depth 0)
#   siglip_locca  + the LocCa decoder (loss.locca_weight 1: SigLIP 2 adds the decoder loss to the sigmoid loss)
#   siglip2       + self-distillation and masked prediction for the last 20 % of training (SigLIP 2 §2.3,
#                 SILC / TIPS)
STAGES = ("siglip", "siglip_locca", "siglip2")


def apply_stage(c, stage: str) -> None:
    """Sets `c` (with model.locca sized) to `stage` in place; the decoder is off for `siglip`."""
    if stage == "siglip":
        c.model.locca.depth = 0
        for name in ("refexp",):  # needs the decoder
            if name in c.evals:
                c.evals[name].split = ""
        return
    c.loss.locca_weight = 1.0
    if stage == "siglip2":  # SigLIP 2 §2.3: SILC's self-distillation (weight 1) and TIPS' masked prediction
        # (weight 0.25) from 80 % of training on, the EMA teacher initialised from the student then
        # (bigvl/losses/self_distill.py, masked_prediction.py; the keys' sources: docs/guides/siglip2.md).
        c.loss.self_distill.update(weight=1.0, start_fraction=0.8)
        c.loss.masked_prediction.weight = 0.25


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=STAGES)
    c = demo.get_config("sigmoid")
    retrieval = c.evals.retrieval.split
    c.evals.refexp = dict(type="refexp", split=retrieval)
    c.evals.dense = dict(type="dense", split=retrieval)
    # The decoder: 2 layers at the image tower's width (96), 32 coordinate bins (one per pixel of the 32-px
    # input), prompts + targets in 24 tokens (the world's short captions are ≤ 16 tokens).
    c.model.locca.update(depth=2, num_bins=32, context_length=24)
    stage = args.one_of(STAGES, "siglip_locca")
    apply_stage(c, stage)
    if stage == "siglip2":  # CPU-sized: 8 local crops of 16 px (4 × 4 patches of the 32-px input), a small DINO head
        c.loss.self_distill.update(local_size=16, local_crops=8, num_prototypes=1024, hidden_dim=256, bottleneck_dim=64)
    return c
