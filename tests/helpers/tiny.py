"""A tiny world and a tiny CLIP config for fast end-to-end tests (no side effects on import)."""
from bigvl.config import base_config

TINY_WORLD = dict(seed=0, num_train=192, num_train_shards=2, num_zeroshot=60, num_retrieval=40,
                  num_hard_negatives=40, image_size=32)


def tiny_towers(model, *, image_size=16, patch_size=8, depth=1, num_heads=2, vocab_size=64, context_length=8,
                image=None, text=None):
    """Set both towers of the `config.model` section `model` to width-32, MLP-64 "custom" transformers of
    `depth` layers and `num_heads` heads (in place; returns `model`). `image` / `text`: further fields of
    that tower (e.g. pool, causal)."""
    model.image.update(variant="custom", image_size=image_size, patch_size=patch_size, width=32, depth=depth,
                       num_heads=num_heads, mlp_dim=64, **(image or {}))
    model.text.update(variant="custom", vocab_size=vocab_size, context_length=context_length, width=32,
                      depth=depth, num_heads=num_heads, mlp_dim=64, **(text or {}))
    return model


def tiny_config(world, **overrides):
    """A 2-layer CLIP on `world` that trains a step in well under a second."""
    c = base_config()
    c.total_steps, c.batch_size, c.log_steps, c.ckpt_steps, c.eval_steps = 6, 16, 1, 3, 0
    c.progress_bar = False
    c.data.train_paths = [str(world / "train-*.array_record")]
    c.data.tokenizer = str(world / "tokenizer.model")
    tiny_towers(c.model, image_size=32, depth=2, vocab_size=1024, context_length=16)
    c.model.embed_dim = 16
    c.optim.warmup_steps = 2
    c.evals.batch_size = 64
    return set_keys(c, overrides)


def set_keys(c, overrides):
    """`c` with each dotted key of `overrides` ("loss.self_distill.weight": 1.0, ...) set in place."""
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c
