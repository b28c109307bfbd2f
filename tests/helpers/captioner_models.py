"""Tiny CoCa / CLIPS models and inputs shared by the captioner tests (no side effects on import)."""
import functools

import flax.linen as nn
import jax
import numpy as np

from bigvl.config import base_config
from bigvl.models import build_model
from tests.helpers.tiny import tiny_towers

VOCAB, LENGTH, DEC_LENGTH, BATCH = 64, 12, 14, 3


def tiny_model_config(kind: str):
    """`config.model` of a 1-layer captioner with a 64-piece vocabulary."""
    m = base_config().model
    m.kind = kind
    tiny_towers(m, vocab_size=VOCAB, context_length=LENGTH, image={"pool": "gap"})
    m.decoder.update(depth=1, context_length=DEC_LENGTH, num_queries=4, pooler_heads=2)
    m.embed_dim = 16
    return m


def random_tokens(rng: np.random.Generator, rows: int, length: int, min_len: int = 3) -> np.ndarray:
    """Right-padded token rows: ids in [4, VOCAB), EOS (3), then pads (0)."""
    out = np.zeros((rows, length), np.int32)
    for r in range(rows):
        n = int(rng.integers(min_len, length))
        out[r, :n - 1] = rng.integers(4, VOCAB, n - 1)
        out[r, n - 1] = 3
    return out


@functools.lru_cache(maxsize=None)
def build(kind: str, seed: int = 0):
    """(model, params, images uint8 [B,16,16,3]) (the model's own init)."""
    model = build_model(tiny_model_config(kind))
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (BATCH, 16, 16, 3)).astype(np.uint8)
    tokens = random_tokens(rng, BATCH, LENGTH)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), images, tokens)["params"])
    return model, params, images


def jitted_apply(model):
    """model.apply under jax.jit (`method` static): one compile per method and shape."""
    return jax.jit(model.apply, static_argnames=("method",))
