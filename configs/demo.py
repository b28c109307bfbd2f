"""The demo: a small CLIP trained on the built-in synthetic recaptioned world, on a CPU.

    python -m bigvl.main --config configs/demo.py --workdir workdirs/demo

Builds the world (cached under $BIGVL_CACHE, default ~/.cache/bigvl) on first use, then
trains through the same pipeline, train step and evaluators as the pod configs and
prints zero-shot, retrieval and hard-negative results beside chance. Variants after a
colon: `configs/demo.py:alt` trains on alt-text only, `:recap` on synthetic captions
only, `:sigmoid` uses the SigLIP loss (default: mix with p = 0.5, softmax loss).
"""
import os

from bigvl.config import base_config, config_variants


def world_dir(seed: int = 0) -> str:
    return os.path.join(os.environ.get("BIGVL_CACHE", os.path.expanduser("~/.cache/bigvl")),
                        f"synthetic_world_seed{seed}")


def get_config(arg: str = ""):
    c = base_config()
    variants = config_variants(arg, ("alt", "recap", "sigmoid"))
    c.seed = 0
    c.total_steps = 600
    c.batch_size = 64
    c.log_steps = 20
    c.eval_steps = 200
    c.ckpt_steps = 200
    c.report = True

    c.world.build = True
    c.world.dir = world_dir(c.world.seed)
    c.world.num_train = 20000
    c.world.image_size = 64
    # How scenes look (bigvl/data/world/scene.py SceneStyle); docs/world_study.md: what changing them did.
    c.world.scene.update(shape_scale=1.0, max_objects=4, rotation=True, textured=True, p_same_colour=0.0)

    c.data.train_paths = [os.path.join(c.world.dir, "train-*.array_record")]
    c.data.tokenizer = os.path.join(c.world.dir, "tokenizer.model")
    c.data.caption_strategy = "mix"
    c.data.mix_p = 0.5
    for name in ("alt", "recap"):
        if name in variants:
            c.data.caption_strategy = name

    c.model.image.variant = "custom"
    c.model.image.image_size = 64
    c.model.image.patch_size = 8
    c.model.image.width = 128
    c.model.image.depth = 4
    c.model.image.num_heads = 4
    c.model.image.mlp_dim = 512
    c.model.image.pool = "gap"
    c.model.text.vocab_size = 2048
    c.model.text.context_length = 32
    c.model.text.variant = "custom"
    c.model.text.width = 128
    c.model.text.depth = 4
    c.model.text.num_heads = 4
    c.model.text.mlp_dim = 512
    c.model.embed_dim = 128

    c.optim.lr = 1e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05

    if "sigmoid" in variants:
        c.loss.name = "sigmoid"
        c.model.temperature_init = 10.0
        c.model.bias_init = -10.0

    c.evals.batch_size = 256
    c.evals.zeroshot = os.path.join(c.world.dir, "zeroshot.array_record")
    c.evals.zeroshot_classes = os.path.join(c.world.dir, "zeroshot_classes.json")
    c.evals.retrieval = os.path.join(c.world.dir, "retrieval.array_record")
    c.evals.long_retrieval_field = "long"
    c.evals.hard_negatives = os.path.join(c.world.dir, "hard_negatives.array_record")
    c.evals.pointing = c.evals.retrieval  # its records know where each object is
    return c
