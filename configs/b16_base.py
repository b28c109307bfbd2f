"""What every pod-scale B/16 config shares: batch 32k, bf16, remat, the run's cadence, the mesh variants.

Not a run on its own (no data, towers as base_config's defaults): configs/clip_b16.py and
configs/siglip_b16.py start from it, and coca_b16, clips_l14, recipe_b16 through clip_b16.
Flags: `fsdp` shards params over an fsdp axis of 8 (rest data); `fsdp_tp` adds tensor = 4.
"""
from bigvl.config import base_config, parse_config_args


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=("fsdp", "fsdp_tp"))
    c = base_config()
    c.batch_size = 32_768
    c.log_steps = 100
    c.eval_steps = 5_000
    c.ckpt_steps = 2_000
    c.keep_ckpts = 3

    # data.train_paths / data.tokenizer come from the command line
    c.data.min_crop_scale = 0.4
    c.data.num_workers = 16

    c.model.dtype = "bfloat16"
    c.model.remat = "dots_saveable"
    c.optim.warmup_steps = 10_000

    mesh = args.one_of(("fsdp", "fsdp_tp"), "")
    if mesh == "fsdp":
        c.mesh.data, c.mesh.fsdp = -1, 8
    if mesh == "fsdp_tp":
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 8, 4
    c.evals.batch_size = 1024
    return c
