"""The demo: a small CLIP trained on the built-in synthetic recaptioned world, on a CPU.

    python -m bigvl.main --config configs/demo.py --workdir workdirs/demo

Builds the world (cached under $BIGVL_CACHE, default ~/.cache/bigvl) on first use, then
trains through the same pipeline, train step and evaluators as the pod configs and
prints zero-shot, retrieval and hard-negative results beside chance.

The world is one whose captions need shape (docs/results/world_study.md): large unrotated shapes on
plain backgrounds, 70 % of the train images with one object (the rest hold 2 or 3), short
captions that do not name the background. The model sees 32-px images in
4-px patches with small towers (image 3 × 96, text 2 × 96), so 1,200 steps fit the time the
600 steps of the world before took.

Variants after a colon: `configs/demo.py:alt` trains on alt-text only, `:mix` on alt-text or
synthetic caption with p = 0.5, `:sigmoid` uses the SigLIP loss (default: `recap`, the
synthetic captions only, softmax loss); `:classic` is the demo as it was before issue 20
(the demo world of 1–4 rotated shapes on textured backgrounds, 64-px images in 8-px patches,
4 × 128 towers, 600 steps, `mix`), the one earlier figures in docs/ were measured on.
"""
import os

from bigvl.config import base_config, config_variants


def world_dir(seed: int = 0, classic: bool = False) -> str:
    return os.path.join(os.environ.get("BIGVL_CACHE", os.path.expanduser("~/.cache/bigvl")),
                        f"synthetic_world{'_classic' if classic else ''}_seed{seed}")


def get_config(arg: str = ""):
    c = base_config()
    variants = config_variants(arg, ("alt", "mix", "recap", "sigmoid", "classic"))
    classic = "classic" in variants
    c.seed = 0
    c.total_steps = 600 if classic else 1200
    c.batch_size = 64
    c.log_steps = 20
    c.eval_steps = 200 if classic else 400
    c.ckpt_steps = c.eval_steps
    c.report = True

    c.world.build = True
    c.world.dir = world_dir(c.world.seed, classic)
    c.world.num_train = 20000
    c.world.image_size = 64
    # How scenes look and what short captions name (bigvl/data/world/scene.py SceneStyle);
    # docs/results/world_study.md: what changing them did, and why these make the captions need shape.
    if classic:
        c.world.scene.update(shape_scale=1.0, max_objects=4, rotation=True, textured=True, p_same_colour=0.0)
    else:
        c.world.scene.update(shape_scale=1.6, max_objects=3, rotation=False, textured=False, p_same_colour=0.0,
                             num_object_weights=(0.7, 0.2, 0.1, 0.0), p_caption_background=(0.0, 0.0))

    c.data.train_paths = [os.path.join(c.world.dir, "train-*.array_record")]
    c.data.tokenizer = os.path.join(c.world.dir, "tokenizer.model")
    c.data.caption_strategy = "mix" if classic else "recap"
    c.data.mix_p = 0.5
    for name in ("alt", "mix", "recap"):
        if name in variants:
            c.data.caption_strategy = name

    c.model.image.variant = "custom"
    c.model.image.image_size = 64 if classic else 32  # the world renders 64 px; the pipeline resizes
    c.model.image.patch_size = 8 if classic else 4  # 64 tokens either way
    c.model.image.width = 128 if classic else 96
    c.model.image.depth = 4 if classic else 3
    c.model.image.num_heads = 4
    c.model.image.mlp_dim = 4 * c.model.image.width
    c.model.image.pool = "gap"
    c.model.text.vocab_size = 2048
    c.model.text.context_length = 32
    c.model.text.variant = "custom"
    c.model.text.width = 128 if classic else 96
    c.model.text.depth = 4 if classic else 2
    c.model.text.num_heads = 4
    c.model.text.mlp_dim = 4 * c.model.text.width
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
