"""Model FLOPs: open_clip's published profiler numbers, and an exact count of the matmuls the
model really traces (every dot_general in its jaxpr) for several tower layouts."""
import math

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jex_core

from bigvl.models.flops import model_flops_per_pair
from bigvl.models import build_model, model_config_defaults


def clip_b16():
    c = model_config_defaults()
    c.image.variant, c.image.image_size, c.image.pool = "B/16", 224, "cls"
    c.text.variant, c.text.width, c.text.num_heads, c.text.mlp_dim = "B", 512, 8, 2048
    c.embed_dim = 512
    return c


def test_vit_b16_clip_matches_open_clip_profile():
    flops = model_flops_per_pair(clip_b16())
    # open_clip docs/model_profile.csv, ViT-B-16: image 35.13, text 5.96, total 41.09 GFLOPs.
    assert flops["image"] / 1e9 == pytest.approx(35.13, abs=0.01)
    assert flops["text"] / 1e9 == pytest.approx(5.96, abs=0.01)
    assert flops["total_forward"] / 1e9 == pytest.approx(41.09, abs=0.01)
    # SPEC: "ViT-B/16 CLIP @224 is about 123 GFLOPs per pair per training step".
    assert flops["train"] == 3 * flops["total_forward"]
    assert flops["train"] / 1e9 == pytest.approx(123, rel=0.01)


def test_mlp_4x_reduces_to_spec_formula():
    c = clip_b16()
    c.image.pool, c.image.proj, c.text.proj = "gap", False, False
    c.embed_dim = 768
    c.text.width, c.text.num_heads, c.text.mlp_dim = 768, 12, 3072
    n, d, layers, p = 196, 768, 12, 16
    spec_image = layers * (24 * n * d * d + 4 * n * n * d) + 2 * n * (3 * p * p) * d
    spec_text = layers * (24 * 77 * d * d + 4 * 77 * 77 * d)
    flops = model_flops_per_pair(c)
    assert flops["image"] == spec_image and flops["text"] == spec_text


def dot_flops(jaxpr) -> int:
    """2 · (output size) · (contracted size), summed over every dot_general, sub-jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[a] for a in contract)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jex_core.ClosedJaxpr):
                    total += dot_flops(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    total += dot_flops(sub)
    return total


@pytest.mark.parametrize("image_pool, text_pool, proj", [("cls", "eos", True), ("map", "map", False),
                                                         ("gap", "last", True)])
def test_formula_counts_every_traced_matmul(image_pool, text_pool, proj):
    c = model_config_defaults()
    c.image.update(variant="custom", image_size=32, patch_size=8, width=48, depth=2, num_heads=4, mlp_dim=80,
                   pool=image_pool, proj=proj)
    c.text.update(variant="custom", vocab_size=100, context_length=12, width=48, depth=3, num_heads=4,
                  mlp_dim=144, pool=text_pool, proj=proj, causal=text_pool == "eos")
    c.embed_dim = 32 if proj else 48
    model = build_model(c)
    images, tokens = jnp.zeros((1, 32, 32, 3), jnp.uint8), jnp.zeros((1, 12), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), images, tokens)["params"])
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, images, tokens))(params)
    flops = model_flops_per_pair(c)
    assert flops["total_forward"] == dot_flops(jaxpr.jaxpr)
