"""`model.scan_layers`: the towers' encoder blocks under nn.scan (params stacked [L, ...]).

References: the unrolled model (a Python loop of independently named blocks) for outputs
and gradients; hand-stacked / hand-sliced arrays for the layout conversion; the logical
rules written out for the shardings.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.models import build_model, count_params, model_config_defaults
from bigvl.models.pretrained import adapt_params, stack_layers, unstack_layers
from bigvl.models.transformer import LAYER_AXIS, SCANNED_BLOCKS, per_layer_ndim
from bigvl.parallel.mesh import DEFAULT_RULES, logical_shardings, make_mesh
from tests.helpers.tiny import tiny_towers

DEPTH = 3


def tiny(causal=True, text_pool="eos", remat="none", scan=False, **model):
    c = model_config_defaults()
    tiny_towers(c, patch_size=4, depth=DEPTH, num_heads=4, text={"causal": causal, "pool": text_pool})
    c.embed_dim, c.remat, c.scan_layers = 16, remat, scan
    c.update(model)
    return c


def inputs(batch=4, seed=0):
    """uint8 images [B,16,16,3] and right-padded tokens [B,8] of varied lengths (EOS = 3)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 16, 16, 3), dtype=np.uint8)
    tokens = np.zeros((batch, 8), np.int32)
    for i, length in enumerate(rng.integers(2, 8, batch)):
        tokens[i, :length - 1] = rng.integers(4, 64, length - 1)
        tokens[i, length - 1] = 3
    return jnp.asarray(images), jnp.asarray(tokens)


def init(c):
    images, tokens = inputs(batch=1)
    return jax.jit(lambda r: nn.unbox(build_model(c).init(r, images, tokens)["params"]))(jax.random.key(0))


def shapes(tree):
    return jax.tree.map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), tree)


# ---------------------------------------------------------------- same function as unrolled
@pytest.mark.slow
@pytest.mark.parametrize("remat", ["none", "full"])
@pytest.mark.parametrize("causal,text_pool", [(True, "eos"), (False, "last")])
def test_scanned_towers_match_unrolled_outputs_and_grads(causal, text_pool, remat):
    unrolled = build_model(tiny(causal, text_pool, remat))
    scanned = build_model(tiny(causal, text_pool, remat, scan=True))
    params = init(tiny(causal, text_pool, remat))
    images, tokens = inputs()

    def towers_and_grads(model, p):
        """(pooled [B,D] + tokens [B,N,D] of both towers, their grads of a contrastive-like loss)."""
        def loss(p):
            towers = model.apply({"params": p}, images, tokens, method=lambda m, i, t: (*m.image(i), *m.text(t)))
            image_pooled, _, text_pooled, text_tokens = towers
            weights = jnp.arange(1.0, 1.0 + text_tokens.shape[1])[None, :, None]
            return jnp.sum(image_pooled @ text_pooled.T) + jnp.mean(text_tokens * weights), towers
        return jax.jit(jax.grad(loss, has_aux=True))(p)[::-1]

    want, grad_unrolled = towers_and_grads(unrolled, params)
    got, grad_scanned = towers_and_grads(scanned, stack_layers(params))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

    def close(g, w):  # float32 sums in another order: tolerance relative to the leaf's scale
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(w)))))
    jax.tree.map(close, unstack_layers(grad_scanned), grad_unrolled)


# ---------------------------------------------------------------- layout conversion
def test_stacking_matches_the_scanned_model_and_round_trips_exactly():
    params = jax.tree.map(np.asarray, init(tiny()))
    for i in range(DEPTH):  # bfloat16 leaves too: the round trip must not go through another dtype
        ln_1 = params["text"]["encoder"][f"block_{i}"]["ln_1"]
        ln_1["scale"] = ln_1["scale"].astype(jnp.bfloat16)
    stacked = stack_layers(params)

    # the stacked tree is exactly the scanned model's (paths, shapes, dtypes), modulo the bf16 edit
    scanned_shapes = shapes(init(tiny(scan=True)))
    scanned_shapes["text"]["encoder"][SCANNED_BLOCKS]["ln_1"]["scale"] = ((DEPTH, 32), jnp.dtype(jnp.bfloat16))
    assert shapes(stacked) == scanned_shapes

    for tower in ("image", "text"):  # layer i of the stack is block_i, by hand
        fc1 = stacked[tower]["encoder"][SCANNED_BLOCKS]["mlp"]["fc1"]["kernel"]
        for i in range(DEPTH):
            np.testing.assert_array_equal(fc1[i], params[tower]["encoder"][f"block_{i}"]["mlp"]["fc1"]["kernel"])
    back = unstack_layers(stacked)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    assert shapes(back) == shapes(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_conversion_leaves_the_decoder_blocks_alone():
    leaf = np.arange(4.0)
    tree = {"image": {"encoder": {"block_0": {"w": leaf}, "block_1": {"w": leaf + 1}, "ln_final": {"scale": leaf}}},
            "decoder": {"block_0": {"w": leaf}, "block_1": {"w": leaf}}}
    stacked = stack_layers(tree)
    assert set(stacked["decoder"]) == {"block_0", "block_1"}
    np.testing.assert_array_equal(stacked["image"]["encoder"][SCANNED_BLOCKS]["w"], [leaf, leaf + 1])
    np.testing.assert_array_equal(stacked["image"]["encoder"]["ln_final"]["scale"], leaf)
    assert jax.tree.structure(unstack_layers(tree)) == jax.tree.structure(tree)  # nothing scanned: unchanged
    np.testing.assert_array_equal(unstack_layers(stacked)["image"]["encoder"]["block_1"]["w"], leaf + 1)
    with pytest.raises(ValueError, match="not block_0..block_1"):
        stack_layers({"encoder": {"block_0": {"w": leaf}, "block_2": {"w": leaf}}})


@pytest.mark.parametrize("source_scan,target_scan", [(False, True), (True, False)])
def test_adapt_params_fine_tunes_across_layouts(source_scan, target_scan):
    unrolled = jax.tree.map(np.asarray, init(tiny()))
    source = stack_layers(unrolled) if source_scan else unrolled
    images, tokens = inputs(batch=1)
    target_model = build_model(tiny(scan=target_scan))
    target = jax.eval_shape(lambda r: nn.unbox(target_model.init(r, images, tokens)["params"]), jax.random.key(1))
    adapted = adapt_params(source, target)
    assert shapes(adapted) == shapes(target)
    want = stack_layers(unrolled) if target_scan else unrolled
    jax.tree.map(np.testing.assert_array_equal, adapted, want)


# ---------------------------------------------------------------- sharding, init by shape, a train step
def test_init_by_shape_names_the_layer_axis():
    images, tokens = inputs(batch=1)
    boxed = jax.eval_shape(lambda r: build_model(tiny(scan=True)).init(r, images, tokens)["params"],
                           jax.random.key(0))
    blocks = boxed["image"]["encoder"][SCANNED_BLOCKS]
    for box in jax.tree.leaves(blocks, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)):
        assert box.names[0] == LAYER_AXIS and box.value.shape[0] == DEPTH
    assert blocks["mlp"]["fc1"]["kernel"].names == (LAYER_AXIS, "embed", "mlp")
    unrolled = jax.eval_shape(lambda r: build_model(tiny()).init(r, images, tokens)["params"], jax.random.key(0))
    assert count_params(boxed) == count_params(unrolled)
    assert (LAYER_AXIS, None) in DEFAULT_RULES


@pytest.mark.slow
def test_scanned_params_shard_by_the_rules_and_a_train_step_runs():
    from benchmarks.train_step import random_batch
    from bigvl.config import base_config
    from bigvl.parallel.mesh import batch_sharding, host_local_to_global
    from bigvl.train.state import make_train_setup
    from bigvl.train.step import make_train_step

    config = base_config()
    config.model = tiny(scan=True, remat="full")
    config.batch_size, config.total_steps, config.optim.warmup_steps = 8, 4, 0
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    images, tokens = inputs(batch=1)
    boxed = jax.eval_shape(lambda r: build_model(config.model).init(r, images, tokens)["params"], jax.random.key(0))
    shardings = logical_shardings(boxed, mesh, DEFAULT_RULES)
    assert all(isinstance(s, NamedSharding) for s in jax.tree.leaves(shardings))
    blocks = shardings["text"]["encoder"][SCANNED_BLOCKS]
    assert blocks["mlp"]["fc1"]["kernel"].spec == P(None, "fsdp", "tensor")  # layers replicated
    assert blocks["attn"]["out"]["kernel"].spec == P(None, "tensor", None, "fsdp")
    assert blocks["ln_1"]["scale"].spec == P(None, "fsdp")

    setup = make_train_setup(config, mesh, DEFAULT_RULES)
    state = setup.compiled_init(jax.random.key(0))
    fc1 = state["params"]["image"]["encoder"][SCANNED_BLOCKS]["mlp"]["fc1"]["kernel"]
    assert fc1.shape == (DEPTH, 32, 64) and fc1.sharding.spec == P(None, "fsdp", "tensor")
    batch = host_local_to_global(random_batch(config, num_texts=1), mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        step = jax.jit(make_train_step(config, setup), in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                       out_shardings=(setup.state_shardings, None))
        new_state, metrics = step(state, batch)
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    new_fc1 = new_state["params"]["image"]["encoder"][SCANNED_BLOCKS]["mlp"]["fc1"]["kernel"]
    assert new_fc1.sharding.spec == P(None, "fsdp", "tensor")
    assert np.all(np.any(np.asarray(new_fc1) != np.asarray(fc1), axis=(1, 2)))  # every layer trained


# ---------------------------------------------------------------- weight decay sees the same ranks
def test_per_layer_ndim_drops_only_the_stacked_axis():
    assert per_layer_ndim("image/encoder/blocks/ln_1/scale", 2) == 1
    assert per_layer_ndim("image/encoder/blocks/mlp/fc1/kernel", 3) == 2
    assert per_layer_ndim("image/encoder/block_0/ln_1/scale", 1) == 1
    assert per_layer_ndim("decoder/block_0/mlp/fc1/kernel", 2) == 2
    assert per_layer_ndim("image/blocks", 2) == 2  # a param named like the module is not under it


def test_weight_decay_mask_is_the_same_in_both_layouts():  # LayerNorm scales [L, D] stay undecayed
    from bigvl.config import base_config
    from bigvl.train.optimizer import decay_mask
    no_decay = base_config().optim.no_decay
    params = jax.tree.map(np.asarray, init(tiny()))
    unrolled, scanned = decay_mask(params, no_decay), decay_mask(stack_layers(params), no_decay)
    for tower in ("image", "text"):
        assert scanned[tower]["encoder"][SCANNED_BLOCKS] == unrolled[tower]["encoder"]["block_0"]


# ---------------------------------------------------------------- the point: a program flat in depth
def test_scanned_program_does_not_grow_with_depth():
    images, tokens = inputs(batch=2)

    def program_lines(depth, scan):
        c = tiny(scan=scan)
        c.image.depth = c.text.depth = depth
        model = build_model(c)
        params = jax.eval_shape(lambda r: nn.unbox(model.init(r, images, tokens)["params"]), jax.random.key(0))
        step = jax.jit(jax.grad(lambda p: model.apply({"params": p}, images, tokens)["image_embeds"].sum()))
        return len(step.lower(params).as_text().splitlines())

    assert program_lines(2, scan=True) == program_lines(6, scan=True)
    assert program_lines(6, scan=False) > 2 * program_lines(2, scan=False)
