"""The demo: a small CLIP trained on the built-in synthetic recaptioned world, on a CPU.

    python -m bigvl.main --config demo --workdir workdirs/demo

Builds the world (cached under $BIGVL_CACHE, default ~/.cache/bigvl) on first use, then
trains through the same pipeline, train step and evaluators as the pod configs and
prints zero-shot, retrieval and hard-negative results beside chance.

The world is one whose captions need shape (docs/world_study.md): large unrotated shapes on
plain backgrounds, 70 % of the train images with one object (the rest hold 2 or 3), short
captions that do not name the background. The model sees 32-px images in
4-px patches with small towers (image 3 × 96, text 2 × 96), so 1,200 steps fit the time the
600 steps of the world before took.

Flags after a colon: `demo:alt` trains on alt-text only, `:mix` on alt-text or synthetic
caption with p = 0.5 (default: `recap`, the synthetic captions only); `:sigmoid` uses the
SigLIP loss (default softmax), e.g. `demo:alt,sigmoid`. configs/demo_classic.py is the demo as
it was before the world study, the one earlier figures in docs/ were measured on.
"""
import os

from bigvl.config import base_config, parse_config_args

STRATEGIES = ("alt", "mix", "recap")


def world_dir(seed: int = 0, variant: str = "") -> str:
    """$BIGVL_CACHE/synthetic_world[_VARIANT]_seedN: where the demo world is built and cached."""
    return os.path.join(os.environ.get("BIGVL_CACHE", os.path.expanduser("~/.cache/bigvl")),
                        f"synthetic_world{'_' + variant if variant else ''}_seed{seed}")


def use_world(c, directory: str) -> None:
    """Points `world.dir` and every path read from the world (train shards, tokenizer, eval splits) at `directory`."""
    c.world.dir = directory
    c.data.train_paths = [os.path.join(directory, "train-*.array_record")]
    c.data.tokenizer = os.path.join(directory, "tokenizer.model")
    retrieval = os.path.join(directory, "retrieval.array_record")
    c.evals.zeroshot = dict(type="zeroshot", split=os.path.join(directory, "zeroshot.array_record"),
                            classes=os.path.join(directory, "zeroshot_classes.json"))
    c.evals.retrieval = dict(type="retrieval", split=retrieval, field="short")
    c.evals.long_retrieval = dict(type="retrieval", split=retrieval, field="long")  # long captions as queries
    c.evals.hard_negatives = dict(type="hard_negatives", split=os.path.join(directory, "hard_negatives.array_record"))
    c.evals.pointing = dict(type="pointing", split=retrieval)  # its records know where each object is


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=STRATEGIES + ("sigmoid",))
    c = base_config()
    c.seed = 0
    c.total_steps = 1200
    c.batch_size = 64
    c.log_steps = 20
    c.eval_steps = 400
    c.ckpt_steps = c.eval_steps
    c.report = True

    c.world.build = True
    c.world.num_train = 20000
    c.world.image_size = 64
    use_world(c, world_dir(c.world.seed))
    # How scenes look and what short captions name (bigvl/data/world/scene.py SceneStyle);
    # docs/world_study.md: what changing them did, and why these make the captions need shape.
    c.world.scene.update(shape_scale=1.6, max_objects=3, rotation=False, textured=False, p_same_colour=0.0,
                         num_object_weights=(0.7, 0.2, 0.1, 0.0), p_caption_background=(0.0, 0.0))

    c.data.caption_strategy = args.one_of(STRATEGIES, "recap")
    c.data.mix_p = 0.5

    c.model.image.variant = "custom"
    c.model.image.image_size = 32  # the world renders 64 px; the pipeline resizes
    c.model.image.patch_size = 4  # 64 tokens
    c.model.image.width = 96
    c.model.image.depth = 3
    c.model.image.num_heads = 4
    c.model.image.mlp_dim = 4 * c.model.image.width
    c.model.image.pool = "gap"
    c.model.text.vocab_size = 2048
    c.model.text.context_length = 32
    c.model.text.variant = "custom"
    c.model.text.width = 96
    c.model.text.depth = 2
    c.model.text.num_heads = 4
    c.model.text.mlp_dim = 4 * c.model.text.width
    c.model.embed_dim = 128

    c.optim.lr = 1e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05

    if "sigmoid" in args:
        c.loss.name = "sigmoid"
        c.model.temperature_init = 10.0
        c.model.bias_init = -10.0

    c.evals.batch_size = 256
    return c
