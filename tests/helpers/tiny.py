"""A tiny world and a tiny CLIP config for fast end-to-end tests (no side effects on import)."""
from bigvl.config import base_config

TINY_WORLD = dict(seed=0, num_train=192, num_train_shards=2, num_zeroshot=60, num_retrieval=40,
                  num_hard_negatives=40, image_size=32)


def tiny_config(world, **overrides):
    """A 2-layer CLIP on `world` that trains a step in well under a second."""
    c = base_config()
    c.total_steps, c.batch_size, c.log_steps, c.ckpt_steps, c.eval_steps = 6, 16, 1, 3, 0
    c.progress_bar = False
    c.data.train_paths = [str(world / "train-*.array_record")]
    c.data.tokenizer = str(world / "tokenizer.model")
    m = c.model
    m.image.update(variant="custom", image_size=32, patch_size=8, width=32, depth=2, num_heads=2, mlp_dim=64)
    m.text.update(variant="custom", vocab_size=1024, context_length=16, width=32, depth=2, num_heads=2,
                  mlp_dim=64)
    m.embed_dim = 16
    c.optim.warmup_steps = 2
    c.evals.batch_size = 64
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c
