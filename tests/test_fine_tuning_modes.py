"""Fine-tuning modes: frozen params (LiT), LoRA adapters, layer-wise LR decay.

Frozen params are checked bitwise after real train steps and counted out of the optimizer
state by size; LoRA against the base model (bitwise at init) and against its merged kernels
(float tolerance); both on an 8-device fsdp x tensor mesh against one device; layer decay
against BEiT's formula written out by hand.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.train_step import random_batch
from bigvl.config import base_config
from bigvl.models import TwoTower, build_model, param_path
from bigvl.models.lora import merge_lora, split_adapters
from bigvl.parallel.mesh import DEFAULT_RULES, batch_sharding, host_local_to_global, make_mesh
from bigvl.train.freeze import param_labels
from bigvl.train.optimizer import layer_ids, scale_by_layer_decay
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step
from tests.helpers.tiny import tiny_towers

LIT = {"frozen": ["image/.*", "image_proj/.*"]}
LORA_TRAINABLE = {"trainable": [".*/lora_[ab]", "log_logit_scale"]}


def _config(mode: str, scan: bool = False):
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=8, depth=2, num_heads=2, vocab_size=64, context_length=8)
    c.model.embed_dim, c.model.scan_layers = 16, scan
    c.batch_size, c.total_steps, c.optim.warmup_steps, c.optim.lr = 8, 10, 0, 1e-2
    if mode == "lit":
        c.optim.update(LIT)
    elif mode == "lora":
        c.model.lora.update(rank=2, alpha=4.0)
        c.optim.update(LORA_TRAINABLE)
    return c


def _flat(tree) -> dict:
    return {param_path(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _train(config, mesh, steps: int = 2):
    """(initial params, params after `steps` train steps, opt_state) on `mesh`."""
    setup = make_train_setup(config, mesh, DEFAULT_RULES)
    state = setup.compiled_init(jax.random.key(0))
    first = _flat(state["params"])
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        step = jax.jit(make_train_step(config, setup), in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                       out_shardings=(setup.state_shardings, None))
        for i in range(steps):
            state, metrics = step(state, host_local_to_global(random_batch(config, 1, seed=i), mesh))
            assert bool(metrics["finite"])
    return first, _flat(state["params"]), state["opt_state"]


def _one_device():
    return make_mesh({"data": 1}, devices=jax.devices()[:1])


@pytest.mark.parametrize("mode", ["lit", pytest.param("lora", marks=pytest.mark.slow)])
def test_frozen_params_stay_bitwise_and_have_no_optimizer_state(mode):
    config = _config(mode)
    before, after, opt_state = _train(config, _one_device(), steps=3)
    labels = _flat(param_labels(jax.tree.map(jnp.zeros_like, before), config.optim))
    frozen = [n for n, lab in labels.items() if lab == "frozen"]
    trained = [n for n in labels if n not in frozen]
    if mode == "lit":
        assert set(frozen) == {n for n in before if n.startswith(("image/", "image_proj/"))}
    else:
        assert set(trained) == {n for n in before if n.endswith(("lora_a", "lora_b"))} | {"log_logit_scale"}
    for name in frozen:
        assert np.array_equal(before[name], after[name]), name
    assert all(not np.array_equal(before[n], after[n]) for n in trained if not n.endswith("lora_a"))
    # Adam's two moments for the trainable params only (+ scalar counts): frozen ones hold nothing.
    state_size = sum(int(np.size(x)) for x in jax.tree.leaves(opt_state) if np.ndim(x) > 0)
    assert state_size == 2 * sum(before[n].size for n in trained if before[n].ndim > 0)


def test_a_regex_matching_no_param_is_named():
    config = _config("")
    config.optim.frozen = ["img/.*"]
    params = {"image": {"kernel": jnp.zeros((2, 2))}}
    with pytest.raises(ValueError, match=r"optim.frozen.*'img/\.\*' matches no param"):
        param_labels(params, config.optim)
    config.optim.frozen = [".*"]
    with pytest.raises(ValueError, match="nothing would train"):
        param_labels(params, config.optim)


@pytest.mark.parametrize("scan", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_lora_at_init_is_the_base_model_and_merges_within_tolerance(scan):
    config = _config("lora", scan=scan)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (4, 16, 16, 3)), jnp.uint8)
    tokens = jnp.asarray(rng.integers(4, 64, (4, 8)), jnp.int32)
    model = build_model(config.model)
    assert type(model).encode_image is TwoTower.encode_image  # what the encoder hands to apply(method=...)
    params = nn.unbox(model.init(jax.random.key(0), images, tokens)["params"])
    base_params, adapters = split_adapters(params)
    assert len(adapters) == 2 * 4 * 2 * (1 if scan else 2)  # A, B × qkv/out/fc1/fc2 × towers × layers
    config_base = _config("", scan=scan)
    plain = build_model(config_base.model).apply({"params": base_params}, images, tokens)
    lora = model.apply({"params": params}, images, tokens)
    for key in ("image_embeds", "text_embeds"):
        assert np.array_equal(np.asarray(lora[key]), np.asarray(plain[key])), key  # B = 0: bitwise

    def perturb(path, x):
        return jnp.asarray(rng.normal(0, 0.3, x.shape), x.dtype) if param_path(path).endswith("lora_b") else x
    trained = jax.tree_util.tree_map_with_path(perturb, params)
    unmerged = model.apply({"params": trained}, images, tokens)
    merged_params, merged_cfg = merge_lora(trained, config.model)
    assert merged_cfg.lora.rank == 0 and set(_flat(merged_params)) == set(_flat(base_params))
    merged = build_model(merged_cfg).apply({"params": merged_params}, images, tokens)
    for key in ("image_embeds", "text_embeds"):
        assert not np.allclose(unmerged[key], plain[key], atol=1e-3)  # the adapters do change the model
        np.testing.assert_allclose(merged[key], unmerged[key], atol=2e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lit", "lora"])
def test_fine_tuning_on_8_devices_equals_one_device(mode):
    config = _config(mode)
    config.optim.lr = 1e-3  # Adam's first steps are ≈ lr·sign(g): float noise in tiny gradients flips it at 1e-2
    _, one, _ = _train(config, _one_device())
    _, eight, _ = _train(config, make_mesh({"data": 1, "fsdp": 4, "tensor": 2}))
    assert one.keys() == eight.keys()
    for name in one:
        np.testing.assert_allclose(eight[name], one[name], atol=2e-5, rtol=1e-4, err_msg=name)


def test_layer_decay_follows_beit_in_both_layouts():
    d, depth = 0.5, 2
    unrolled = {"image": {"patch_embedding": {"kernel": jnp.ones((3, 4))}, "pos_embedding": jnp.ones((5, 4)),
                          "encoder": {"block_0": {"w": jnp.ones((4, 4))}, "block_1": {"w": jnp.ones((4, 4))},
                                      "ln_final": {"scale": jnp.ones(4)}}},
                "text": {"token_embedding": jnp.ones((7, 4)), "encoder": {"block_0": {"w": jnp.ones(4)}}},
                "image_proj": {"kernel": jnp.ones((4, 2))}, "log_logit_scale": jnp.ones(())}
    scaled, _ = scale_by_layer_decay(d).update(unrolled, optax.EmptyState())
    want = {"image/patch_embedding/kernel": d ** 3, "image/pos_embedding": d ** 3,  # embeddings: d^(L+1)
            "image/encoder/block_0/w": d ** 2, "image/encoder/block_1/w": d ** 1, "image/encoder/ln_final/scale": 1.0,
            "text/token_embedding": d ** 2, "text/encoder/block_0/w": d,  # text tower depth 1
            "image_proj/kernel": 1.0, "log_logit_scale": 1.0}
    got = _flat(scaled)
    for name, factor in want.items():
        np.testing.assert_array_equal(got[name], np.full_like(got[name], factor), err_msg=name)
    stacked = {"image": {"encoder": {"blocks": {"w": jnp.ones((depth, 4, 4))}}, "pos_embedding": jnp.ones((5, 4))}}
    assert layer_ids(stacked)["image"]["encoder"]["blocks"]["w"].shape == (depth, 1, 1)
    scaled = _flat(scale_by_layer_decay(d).update(stacked, optax.EmptyState())[0])
    np.testing.assert_array_equal(scaled["image/encoder/blocks/w"][:, 0, 0], [d ** 2, d])
    assert float(scaled["image/pos_embedding"][0, 0]) == d ** 3


@pytest.mark.slow
def test_a_lora_run_resumes_loads_merged_and_exports_merged(tiny_world, tiny_run, tmp_path):
    """LoRA from the tiny run: 3 steps, resumed to 6; `bigvl.load` and export give the merged model."""
    from bigvl.convert.workdir import read_params
    from bigvl.inference.run import abstract_params, load_run, restore_params
    from bigvl.train.loop import train_and_evaluate
    from tests.helpers.tiny import tiny_config

    def config(steps):
        c = tiny_config(tiny_world, total_steps=steps, ckpt_steps=3, **{"init.workdir": str(tiny_run)})
        c.model.lora.update(rank=2, alpha=4.0)
        c.optim.update(LORA_TRAINABLE)
        return c

    workdir = str(tmp_path / "lora")
    train_and_evaluate(config(3), workdir)
    train_and_evaluate(config(6), workdir)  # resumes from step 3
    run = load_run(workdir)
    assert run.step == 6 and run.config.model.lora.rank == 0 and type(run.model).__name__ == "TwoTower"
    lora_cfg = config(6)
    lora_model = build_model(lora_cfg.model)
    unmerged, _ = restore_params(workdir, abstract_params(lora_model, lora_cfg.model, _one_device(), DEFAULT_RULES))
    adapters = split_adapters(unmerged)[1]
    assert any(np.abs(np.asarray(v)).max() > 0 for k, v in adapters.items() if k.endswith("lora_b"))  # trained
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3)), jnp.uint8)
    tokens = jnp.asarray(rng.integers(4, 1024, (4, 16)), jnp.int32)
    want = lora_model.apply({"params": unmerged}, images, tokens)
    got = run.model.apply({"params": run.params}, images, tokens)
    for key in ("image_embeds", "text_embeds"):
        np.testing.assert_allclose(got[key], want[key], atol=2e-5, rtol=1e-5)
    _, flat, _ = read_params(workdir)
    assert not any("lora" in name for name in flat)
    np.testing.assert_array_equal(flat["image/encoder/block_0/attn/qkv/kernel"],
                                  np.asarray(run.params["image"]["encoder"]["block_0"]["attn"]["qkv"]["kernel"]))


def _step_flops(config) -> float:
    mesh = _one_device()
    setup = make_train_setup(config, mesh, DEFAULT_RULES)
    state = jax.eval_shape(setup.init, jax.random.key(0))
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        compiled = jax.jit(make_train_step(config, setup)).lower(state, random_batch(config, 1)).compile()
    return float(compiled.cost_analysis()["flops"])


@pytest.mark.parametrize("mode", ["lit", pytest.param("lora", marks=pytest.mark.slow)])
def test_frozen_params_cost_no_backward(mode):
    """XLA's FLOPs of the compiled step against bigvl's model count (bigvl/models/flops.py): a locked
    image tower saves its whole backward (2 x its forward); LoRA saves every frozen kernel's weight
    gradient (~1 forward of both towers), less what the adapters add."""
    from bigvl.models.flops import model_flops_per_pair
    config = _config(mode)
    config.model.image.patch_size = 4  # 16 image tokens: the image tower is most of the model
    full = _config("")
    full.model.image.patch_size = 4
    forward = model_flops_per_pair(config.model, 1)
    saved = _step_flops(full) - _step_flops(config)
    want = 2 * forward["image"] if mode == "lit" else forward["total_forward"]
    assert saved >= 0.8 * want * config.batch_size, (saved, want * config.batch_size)


def test_mode_flags_set_the_keys():
    from bigvl.fine_tuning import apply_fine_tuning, split_mode
    assert split_mode("lit,fsdp") == ("lit", "fsdp") and split_mode("fsdp_tp") == ("", "fsdp_tp")
    with pytest.raises(ValueError, match="one fine-tuning mode"):
        split_mode("lit,lora")
    siglip = base_config()
    siglip.model.update(bias_init=-10.0)
    siglip.model.image.proj = False
    apply_fine_tuning(siglip, "lit")
    assert list(siglip.optim.frozen) == ["image/.*"]  # no image projection to lock
    apply_fine_tuning(siglip, "lora")
    assert siglip.model.lora.rank == 8 and "logit_bias" in siglip.optim.trainable
