"""Real-size captioner configs: parameter counts (by shape, nothing allocated) against a count
written out from the architecture, and against open_clip's published ViT-L-14 towers; every
parameter carries logical axis names."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from bigvl.config import load_config
from bigvl.models import build_model, count_params


def ln(d):
    return 2 * d


def block(d, m):  # fused qkv + out (biases), MLP, two LayerNorms
    return 4 * d * d + 4 * d + 2 * d * m + m + d + 2 * ln(d)


def cross(d, dm):  # LayerNorm, q, kv from a dm-wide memory, out
    return ln(d) + (d * d + d) + (2 * dm * d + 2 * d) + (d * d + d)


def vit(w, depth, m, patch, size, cls=True):
    n = (size // patch) ** 2 + int(cls)
    return 3 * patch * patch * w + int(cls) * w + n * w + ln(w) + depth * block(w, m) + ln(w)


def text_tower(vocab, ctx, w, depth, m):
    return vocab * w + ctx * w + depth * block(w, m) + ln(w)


def pooler(q, w):
    return q * w + ln(w) + (w * w + w) + (2 * w * w + 2 * w) + (w * w + w) + ln(w) + ln(w)


def _count(spec):
    config = load_config(spec)
    model = build_model(config.model)
    size, length = config.model.image.image_size, config.model.text.context_length
    boxed = jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, size, size, 3), jnp.uint8),
                                                jnp.zeros((1, length), jnp.int32))["params"], jax.random.key(0))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) and len(x.names) == len(x.value.shape) for x in leaves)
    return count_params(boxed), boxed


def test_coca_b16_param_count():
    count, _ = _count("coca_b16")
    v, d, e = 49408, 512, 512
    image = vit(768, 12, 3072, 16, 224)
    decoder = (v * d + 77 * d + d + 12 * block(d, 2048) + ln(d)
               + 12 * (block(d, 2048) + cross(d, 768)) + ln(d) + d * v + v)
    expected = image + decoder + pooler(256, 768) + pooler(1, 768) + 768 * e + d * e + 1
    assert count == expected
    assert 200e6 < count < 260e6  # one MLP per multimodal layer (open_clip: two); see README


def test_clips_l14_param_count_and_published_towers():
    count, boxed = _count("clips_l14")
    towers = vit(1024, 24, 4096, 14, 224) + text_tower(49408, 77, 768, 12, 3072) + 1024 * 768 + 768 * 768 + 1
    assert towers == pytest.approx(427.62e6, abs=0.01e6)  # open_clip ViT-L-14: 427.62M
    d = 768
    decoder = 49408 * d + 128 * d + 6 * (block(d, 3072) + cross(d, d)) + ln(d) + d * 49408 + 49408
    adapters = (1024 * d + d) + (768 * d + d) + ln(d)
    assert count == towers + decoder + adapters
    assert count_params({k: boxed[k] for k in ("image", "text", "image_proj", "text_proj", "log_logit_scale")}) \
        == towers
