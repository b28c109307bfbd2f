"""Models: published parameter counts (shapes only), masks and pooling against naive references,
dtypes, logical axis names, and sharded == single-device outputs."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.models import TwoTower, build_model, count_params, model_config_defaults
from bigvl.models.sizes import resolve_size
from tests.helpers.tiny import tiny_towers

PARAM_NAMES = {"embed", "mlp", "heads", "kv", "vocab", "pos", "patch", "proj", None}
RULES = [("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
         ("vocab", "tensor")]


# ---------------------------------------------------------------- configs
def clip_b16():
    """open_clip ViT-B-16."""
    c = model_config_defaults()
    c.image.variant, c.image.pool, c.image.patch_bias, c.image.ln_pre = "B/16", "cls", False, True
    c.text.variant, c.text.width, c.text.num_heads, c.text.mlp_dim = "B", 512, 8, 2048
    return c


def siglip_b16():
    """big_vision SigLIP B/16 (image tower without a head, as HF google/siglip-base-patch16-224)."""
    c = model_config_defaults()
    c.image.variant, c.image.pool, c.image.patch_bias, c.image.ln_pre, c.image.proj = "B/16", "map", True, False, False
    c.text.update(variant="B", vocab_size=32000, context_length=64, causal=False, pool="last", proj_bias=True)
    c.embed_dim, c.temperature_init, c.bias_init = 768, 10.0, -10.0
    return c


def tiny(image_pool="cls", text_pool="eos", causal=True, bias_init=None, **model):
    c = model_config_defaults()
    tiny_towers(c, patch_size=4, depth=2, num_heads=4, image={"pool": image_pool},
                text={"causal": causal, "pool": text_pool})
    c.embed_dim, c.bias_init = 16, bias_init
    c.update(model)
    return c


def abstract_params(c, batch=1):
    model = build_model(c)
    images = jnp.zeros((batch, c.image.image_size, c.image.image_size, 3), jnp.uint8)
    tokens = jnp.zeros((batch, c.text.context_length), jnp.int32)
    return jax.eval_shape(lambda r: model.init(r, images, tokens)["params"], jax.random.key(0))


def inputs(c, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    size, length = c.image.image_size, c.text.context_length
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    tokens = np.zeros((batch, length), np.int32)
    for i in range(batch):  # text ids, eos (3), then pads (0)
        n = 1 + (i * 3) % (length - 1)
        tokens[i, :n] = rng.integers(4, c.text.vocab_size, n)
        tokens[i, n] = c.text.eos_id
    return jnp.asarray(images), jnp.asarray(tokens)


def init(c, seed=0):
    """(model, float params) for config `c`, init jitted (eager dispatch compiles op by op: slow)."""
    model = build_model(c)
    images, tokens = inputs(c, batch=1)
    params = jax.jit(lambda r: nn.unbox(model.init(r, images, tokens)["params"]))(jax.random.key(seed))
    return model, params


@functools.cache
def shared_params(kind: str):
    """Params shared by every test config that differs from these two only in options without
    params (pooling other than map, causal, dtype, remat): XLA compiles dominate test time."""
    return init(CLIP_TINY if kind == "clip" else MAP_TINY)[1]


def apply(model, params, *args, method=None):
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=method))(params, *args)


CLIP_TINY = tiny("cls", "eos", causal=True)
MAP_TINY = tiny("map", "map", causal=False, bias_init=-10.0)  # has every param any text pooling uses


# ---------------------------------------------------------------- published parameter counts
def test_clip_b16_matches_open_clip_param_count():
    params = abstract_params(clip_b16())
    assert count_params(params) == 149_620_737  # open_clip ViT-B-16
    assert count_params(params["image"]) + count_params(params["image_proj"]) == 86_192_640  # .visual
    assert count_params(params["text"]) + count_params(params["text_proj"]) == 63_428_096


def test_siglip_b16_matches_hf_param_count():
    # HF google/siglip-base-patch16-224 lists 203,156,230 tensor elements; 260 = 196 + 64 of
    # them are its integer position_ids buffers (not parameters), leaving 203,155,970.
    params = abstract_params(siglip_b16())
    assert count_params(params) == 203_156_230 - 196 - 64
    assert count_params(params["image"]) == 92_884_224  # SiglipVisionModel: no projection head
    assert set(params) == {"image", "text", "text_proj", "log_logit_scale", "logit_bias"}


def test_vit_l14_matches_open_clip_visual():
    c = clip_b16()
    c.image.variant, c.embed_dim = "L/14", 768
    c.text.width, c.text.num_heads, c.text.mlp_dim = 768, 12, 3072
    params = abstract_params(c)
    assert count_params(params) == 427_616_513  # open_clip ViT-L-14
    assert count_params(params["image"]) + count_params(params["image_proj"]) == 303_966_208  # .visual


@pytest.mark.parametrize("variant, expected", [
    ("Ti/16", (192, 12, 768, 3, 16)), ("S/32", (384, 12, 1536, 6, 32)), ("B/16", (768, 12, 3072, 12, 16)),
    ("L/14", (1024, 24, 4096, 16, 14)), ("H/14", (1280, 32, 5120, 16, 14)), ("g/14", (1408, 40, 6144, 16, 14)),
    ("So400m/14", (1152, 27, 4304, 16, 14)), ("B/8", (768, 12, 3072, 12, 8))])
def test_size_table_matches_big_vision(variant, expected):
    s = resolve_size(variant)
    assert (s.width, s.depth, s.mlp_dim, s.num_heads, s.patch_size) == expected


def test_size_overrides_and_errors():
    assert resolve_size("B", width=512, num_heads=8).width == 512
    assert resolve_size("B/16", patch_size=32).patch_size == 32
    with pytest.raises(ValueError, match="unknown variant"):
        resolve_size("Q/16")
    with pytest.raises(ValueError, match="needs explicit"):
        resolve_size("custom", width=64)
    with pytest.raises(ValueError, match="divisible"):
        resolve_size("custom", width=30, depth=1, mlp_dim=8, num_heads=4)


def test_build_model_rejects_bad_config():
    with pytest.raises(ValueError, match="model.image.pool"):
        build_model(tiny(image_pool="mean"))
    with pytest.raises(ValueError, match="model.remat"):
        build_model(tiny(remat="some"))
    c = tiny()
    c.image.proj = False  # width 32 != embed_dim 16
    with pytest.raises(ValueError, match="model.image.proj"):
        build_model(c)
    with pytest.raises(ValueError, match="model.image.stem"):
        build_model(_with_stem("resnet"))
    with pytest.raises(ValueError, match="power-of-two patch size"):
        abstract_params(_with_stem("conv", patch_size=6, image_size=24))


def _with_stem(stem, **image):
    c = tiny()
    c.image.update(stem=stem, **image)
    return c


def test_conv_stem_is_the_convolutions_it_says():
    """stem 'conv': tokens = 1×1 projection of stride-2 3×3 convolutions (LayerNorm, GELU), checked
    against the same computation written with jax.lax directly."""
    from bigvl.models.vit import ConvStem
    stem = ConvStem(width=16, patch_size=4)
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    params = nn.unbox(stem.init(jax.random.key(0), x)["params"])
    out = stem.apply({"params": params}, x)
    assert out.shape == (2, 16, 16)  # (16 / 4)² tokens of width 16
    h = x
    for i in range(2):
        h = jax.lax.conv_general_dilated(h, params[f"conv_{i}"]["kernel"], (2, 2), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mean) / jnp.sqrt(var + 1e-6) * params[f"conv_{i}_norm"]["scale"] + params[f"conv_{i}_norm"]["bias"]
        h = jax.nn.gelu(h)
    want = h.reshape(2, 16, -1) @ params["proj"]["kernel"] + params["proj"]["bias"]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    boxed = abstract_params(_with_stem("conv"))  # and the full model carries logical names on it
    leaves = jax.tree.leaves(boxed["image"]["conv_stem"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(set(leaf.names) <= PARAM_NAMES for leaf in leaves)


# ---------------------------------------------------------------- logical axis names
@pytest.mark.parametrize("c", [tiny(), tiny("map", "map", causal=False, bias_init=-10.0), siglip_b16()],
                         ids=["clip", "map", "siglip_b16"])
def test_every_param_has_logical_names(c):
    boxed = abstract_params(c)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    for leaf in leaves:
        assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= PARAM_NAMES, leaf
    specs = jax.tree.leaves(nn.get_partition_spec(boxed), is_leaf=lambda x: isinstance(x, P))
    assert len(specs) == len(leaves)


# ---------------------------------------------------------------- outputs
def test_outputs_shapes_dtypes_and_normalisation():
    model, params = build_model(MAP_TINY), shared_params("map")
    images, tokens = inputs(MAP_TINY)
    out, z_img, z_txt = apply(model, params, images, tokens,
                              method=lambda m, i, t: (m(i, t), m.encode_image(i), m.encode_text(t)))
    assert set(out) == {"image_embeds", "text_embeds", "logit_scale", "logit_bias"}
    for key in ("image_embeds", "text_embeds"):
        assert out[key].shape == (4, 16) and out[key].dtype == jnp.float32
        np.testing.assert_allclose(np.linalg.norm(out[key], axis=1), 1.0, rtol=1e-5)
    assert out["logit_scale"].shape == () and out["logit_scale"].dtype == jnp.float32
    np.testing.assert_allclose(out["logit_scale"], 1 / 0.07, rtol=1e-5)
    np.testing.assert_allclose(out["logit_bias"], -10.0)
    np.testing.assert_allclose(params["log_logit_scale"], np.log(1 / 0.07), rtol=1e-6)
    # The methods give the same embeddings as __call__.
    np.testing.assert_allclose(z_img, out["image_embeds"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(z_txt, out["text_embeds"], rtol=1e-6, atol=1e-7)


def test_clip_has_no_bias_and_its_scale_is_exp_of_the_param():
    """No cap in the forward pass (it would stop the gradient): the optimizer clamps the param
    (tests/test_optimizer.py::test_logit_scale_is_clamped_and_comes_back_down)."""
    model, params = build_model(CLIP_TINY), shared_params("clip")
    assert "logit_bias" not in params
    out = apply(model, {**params, "log_logit_scale": jnp.log(50.0)}, *inputs(CLIP_TINY))
    assert "logit_bias" not in out
    np.testing.assert_allclose(float(out["logit_scale"]), 50.0, rtol=1e-6)


def test_uint8_pixels_map_evenly_onto_minus_one_to_one():
    """The documented pixel range, as properties: 0 → −1, 255 → +1, equal steps, symmetric."""
    from bigvl.models.vit import to_model_range
    got = np.asarray(to_model_range(jnp.arange(256, dtype=jnp.uint8), jnp.float32), np.float64)
    assert got[0] == -1.0 and got[255] == 1.0
    steps = np.diff(got)
    assert np.all(steps > 0)  # strictly monotone
    np.testing.assert_allclose(steps, 2 / 255, rtol=0, atol=1e-6)  # evenly spaced: 255 equal steps cover [-1, 1]
    np.testing.assert_allclose(got, -got[::-1], atol=1e-6)  # v and 255 − v are mirror images: 127.5 ↦ 0


def test_uint8_and_normalised_float_images_agree():
    """A uint8 image and the same image already in [-1, 1] (pixel v ↦ the v-th of 256 evenly
    spaced values from −1 to 1) encode alike."""
    model, params = build_model(CLIP_TINY), shared_params("clip")
    images, _ = inputs(CLIP_TINY)
    as_float = jnp.asarray(np.linspace(-1.0, 1.0, 256, dtype=np.float32)[np.asarray(images)])
    z8, zf = apply(model, params, images, as_float, method=lambda m, a, b: (m.encode_image(a), m.encode_image(b)))
    np.testing.assert_allclose(z8, zf, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_stays_close_to_float32():
    params = shared_params("map")  # float32 params; only the compute dtype differs
    images, tokens = inputs(MAP_TINY)
    out32 = apply(build_model(MAP_TINY), params, images, tokens)
    out16 = apply(build_model(tiny("map", "map", causal=False, bias_init=-10.0, dtype="bfloat16")),
                  params, images, tokens)
    for key in ("image_embeds", "text_embeds"):
        assert out16[key].dtype == jnp.float32
        cos = np.sum(np.asarray(out16[key]) * np.asarray(out32[key]), axis=1)
        assert np.all(cos > 0.995), cos


def test_remat_policies_give_same_values_and_grads():
    params = shared_params("clip")
    images, _ = inputs(CLIP_TINY)

    def value_and_grad(remat):
        model = build_model(tiny("cls", "eos", remat=remat))
        loss = lambda p: jnp.sum(model.apply({"params": p}, images, method=TwoTower.encode_image) ** 3)
        return jax.jit(jax.value_and_grad(loss))(params)

    ref_value, ref_grads = value_and_grad("none")
    for remat in ("full", "dots_saveable"):
        value, grads = value_and_grad(remat)
        np.testing.assert_allclose(value, ref_value, rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, ref_grads)


# ---------------------------------------------------------------- text tower: masks and pooling
def text_outputs(c, params, *token_arrays):
    """For each [B,T] token array: (pooled [B,D], per-token outputs [B,T,D]) of the text tower."""
    return apply(build_model(c), params, *map(jnp.asarray, token_arrays),
                 method=lambda m, *ts: [m.text(t) for t in ts])


def with_change_at_4(tokens):
    changed = tokens.copy()
    changed[0, 4] = 40
    return changed


def test_causal_mask_is_causal():
    tokens = np.array([[5, 6, 7, 8, 9, 10, 3, 0]], np.int32)
    (_, x), (_, y) = text_outputs(CLIP_TINY, shared_params("clip"), tokens, with_change_at_4(tokens))
    np.testing.assert_array_equal(x[:, :4], y[:, :4])  # earlier positions do not see position 4
    assert np.abs(np.asarray(x[:, 4:] - y[:, 4:])).max() > 1e-3


def test_bidirectional_attention_sees_later_tokens():
    tokens = np.array([[5, 6, 7, 8, 9, 10, 3, 0]], np.int32)
    (_, x), (_, y) = text_outputs(MAP_TINY, shared_params("map"), tokens, with_change_at_4(tokens))
    assert np.abs(np.asarray(x[:, :4] - y[:, :4])).max() > 1e-3


@pytest.mark.parametrize("pool", ["eos", "last", "first"])
def test_pooling_picks_the_right_position(pool):
    tokens = np.array([[5, 6, 3, 0, 0, 0, 0, 0],  # eos at 2
                       [5, 3, 7, 3, 0, 0, 0, 0],  # first eos at 1, last real token at 3
                       [5, 6, 7, 8, 9, 10, 11, 12],  # truncated: no eos, no pads
                       [9, 9, 9, 9, 3, 0, 0, 0]], np.int32)
    [(pooled, x)] = text_outputs(tiny("cls", pool, causal=True), shared_params("clip"), tokens)
    expected = []
    for row in tokens:  # naive reference
        real = [i for i, t in enumerate(row) if t != 0]
        eos = [i for i, t in enumerate(row) if t == 3]
        expected.append({"eos": eos[0] if eos else real[-1], "last": real[-1], "first": 0}[pool])
    np.testing.assert_array_equal(pooled, np.asarray(x)[np.arange(4), expected])


@pytest.mark.parametrize("pool", ["last", "eos", "map", "first"])
def test_appended_pads_do_not_change_bidirectional_embedding(pool):
    model = build_model(tiny("map", pool, causal=False, bias_init=-10.0))
    short = jnp.asarray([[5, 6, 7, 3]], jnp.int32)
    padded = jnp.asarray([[5, 6, 7, 3, 0, 0, 0, 0]], jnp.int32)
    z_short, z_padded = apply(model, shared_params("map"), short, padded,
                              method=lambda m, a, b: (m.encode_text(a), m.encode_text(b)))
    np.testing.assert_allclose(z_short, z_padded, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- sharding
@pytest.mark.parametrize("kind", ["map", "clip"])  # clip: cls / eos pooling, so the pooled-only last block
def test_sharded_forward_matches_single_device(kind):
    c = MAP_TINY if kind == "map" else CLIP_TINY
    model, params = build_model(c), shared_params(kind)
    images, tokens = inputs(c, batch=8)
    expected = apply(model, params, images, tokens)

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    param_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_params(c)), mesh, RULES)
    batch_sharding = NamedSharding(mesh, P(("data", "fsdp")))
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        sharded_params = jax.device_put(params, param_shardings)
        fn = jax.jit(lambda p, i, t: model.apply({"params": p}, i, t),
                     in_shardings=(param_shardings, batch_sharding, batch_sharding))
        got = fn(sharded_params, jax.device_put(images, batch_sharding), jax.device_put(tokens, batch_sharding))
    fc1 = sharded_params["image"]["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]
    assert fc1.sharding.spec == P("fsdp", "tensor")
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [pytest.param("map", marks=pytest.mark.slow), "clip"])  # map: 25 s
def test_sharded_transposed_weight_grads_match_single_device_autodiff(kind):
    """bigvl.models.matmul's kernel gradients ('transposed', the CPU default) on a 2x2x2 mesh with
    fsdp- and tensor-split kernels give jax's own single-device gradients ('xla')."""
    base = MAP_TINY if kind == "map" else CLIP_TINY
    params = shared_params(kind)
    images, tokens = inputs(base, batch=8)

    def grads(weight_grad, mesh=None):
        c = base.copy_and_resolve_references()
        c.weight_grad_dot = weight_grad
        model = build_model(c)

        def loss(p, i, t):
            out = model.apply({"params": p}, i, t)
            return jnp.sum(out["image_embeds"] @ out["text_embeds"].T * jnp.arange(1.0, 9.0))
        if mesh is None:
            return jax.jit(jax.grad(loss))(params, images, tokens)
        param_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_params(c)), mesh, RULES)
        batch_sharding = NamedSharding(mesh, P(("data", "fsdp")))
        with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
            fn = jax.jit(jax.grad(loss), in_shardings=(param_shardings, batch_sharding, batch_sharding))
            return fn(jax.device_put(params, param_shardings), jax.device_put(images, batch_sharding),
                      jax.device_put(tokens, batch_sharding))

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    got, expected = grads("transposed", mesh), grads("xla")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6 * np.abs(b).max()),
                 got, expected)


# ---------------------------------------------------------------- the pooled-only last block
@pytest.mark.parametrize("image_pool,text_pool,causal,extra", [
    ("cls", "eos", True, {"remat": "full"}),  # CLIP (remat: the cls position is a static argument)
    # bidirectional text with a padding mask (fast tier: test_appended_pads_do_not_change_bidirectional_embedding)
    pytest.param("cls", "last", False, {}, marks=pytest.mark.slow),
    # scanned: every position runs, the pooled one is gathered
    pytest.param("cls", "eos", True, {"scan_layers": True}, marks=pytest.mark.slow),
])
def test_pooled_last_block_gives_the_embeddings_and_grads_of_every_position(image_pool, text_pool, causal, extra):
    """The reference is the plain encoder (every position through every block, pool after)."""
    images, tokens = inputs(CLIP_TINY, batch=4)
    cfg = tiny(image_pool, text_pool, causal=causal, **extra)
    params = shared_params("clip") if not extra.get("scan_layers") else init(cfg)[1]

    def value_and_grad(pooled_last_block):
        c = tiny(image_pool, text_pool, causal=causal, pooled_last_block=pooled_last_block, **extra)
        model = build_model(c)

        def loss(p):
            out = model.apply({"params": p}, images, tokens)
            return jnp.sum(out["image_embeds"] @ out["text_embeds"].T * jnp.arange(1.0, 5.0)), out
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (value, out), grads = value_and_grad(True)
    (ref_value, ref_out), ref_grads = value_and_grad(False)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for key in ("image_embeds", "text_embeds"):
        np.testing.assert_allclose(out[key], ref_out[key], rtol=1e-5, atol=1e-6)
    # float32 sums in another order: an absolute error relative to the leaf's largest entry
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6 * np.abs(b).max()),
                 grads, ref_grads)
    last = grads["image"]["encoder"]["blocks" if extra.get("scan_layers") else "block_1"]["mlp"]["fc1"]["kernel"]
    assert np.abs(np.asarray(last)).max() > 1e-4  # the pruned block still trains


def test_pooled_last_block_skips_the_last_blocks_other_positions():
    """XLA's own FLOP count of encode_image / encode_text: with the last of `depth` blocks cut to
    one query position, the towers do less than (depth - 0.5) / depth of the plain count (the
    last block keeps its key and value projections, a quarter of it at this MLP width)."""
    images, tokens = inputs(CLIP_TINY, batch=4)
    params = shared_params("clip")
    flops = {}
    for pooled in (True, False):
        model = build_model(tiny("cls", "eos", causal=True, pooled_last_block=pooled))
        for method in ("encode_image", "encode_text"):
            fn = jax.jit(lambda p, x, m=method: model.apply({"params": p}, x, method=getattr(TwoTower, m)))
            cost = fn.lower(params, images if method == "encode_image" else tokens).compile().cost_analysis()
            flops[pooled, method] = cost["flops"]
    depth = CLIP_TINY.image.depth
    for method in ("encode_image", "encode_text"):
        assert flops[True, method] < (depth - 0.5) / depth * flops[False, method], (method, flops)



def test_vision_tower_reads_boxed_params_at_a_smaller_image():
    """`init`'s params as they come (LogicallyPartitioned boxes) apply at the trained size and at a
    smaller image (SigLIP 2's local crops: the position grid resized), as an unboxed tree does."""
    from bigvl.models.vit import VisionTower
    tower = VisionTower(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8, pool="map")
    variables = tower.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3), jnp.uint8))
    small = jax.random.randint(jax.random.key(1), (2, 16, 16, 3), 0, 255).astype(jnp.uint8)
    boxed_pooled, boxed_tokens = tower.apply(variables, small)
    plain_pooled, plain_tokens = tower.apply(nn.unbox(variables), small)
    assert boxed_tokens.shape == (2, 4, 32)
    np.testing.assert_array_equal(np.asarray(boxed_pooled), np.asarray(plain_pooled))
    np.testing.assert_array_equal(np.asarray(boxed_tokens), np.asarray(plain_tokens))
