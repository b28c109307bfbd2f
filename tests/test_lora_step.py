"""What a LoRA / LiT train step differentiates, what it keeps for the backward pass, and its adapter dropout.

- the gradient tree holds the trainable leaves alone (frozen params are constants of the loss);
- under 'dots_saveable' remat with scanned layers (the B/16 configs), LoRA keeps no more for the
  backward pass than full fine-tuning (jax's own list of saved residuals: the adapters' output-sized
  product used to be saved beside each base dot, the B/16 plan anomaly);
- the up-projection's custom VJP against a float64 einsum;
- adapter dropout masks, recorded as they are drawn: different per scanned layer, per GradCache
  micro-batch and per step, the same in a micro-batch's two GradCache passes and for the same
  (state, step) again (what a resume replays).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.ad_checkpoint import saved_residuals

from benchmarks.train_step import random_batch
from bigvl.models.lora import low_rank_delta
from bigvl.parallel.mesh import DEFAULT_RULES, make_mesh
from bigvl.train import step as step_module
from bigvl.train.freeze import split_trainable
from bigvl.train.state import make_train_setup
from tests.test_fine_tuning_modes import _config


def _setup(config):
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    return mesh, make_train_setup(config, mesh, DEFAULT_RULES)


def test_low_rank_delta_and_its_vjp_match_a_float64_einsum():
    rng = np.random.default_rng(0)
    x, a, b, g = (rng.normal(size=s) for s in ((2, 5, 6, 4), (6, 4, 3), (3, 7, 2), (2, 5, 7, 2)))
    got, vjp = jax.vjp(lambda x, a, b: low_rank_delta(x, a, b, 2, 0.5), *(jnp.asarray(v, jnp.float32) for v in (x, a, b)))
    np.testing.assert_allclose(got, 0.5 * np.einsum("btij,ijr,rkl->btkl", x, a, b), rtol=1e-4, atol=1e-5)
    want = (0.5 * np.einsum("btkl,rkl,ijr->btij", g, b, a), 0.5 * np.einsum("btij,btkl,rkl->ijr", x, g, b),
            0.5 * np.einsum("btij,ijr,btkl->rkl", x, a, g))
    for u, v in zip(vjp(jnp.asarray(g, jnp.float32)), want):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["lit", pytest.param("lora", marks=pytest.mark.slow)])
def test_the_gradient_tree_holds_only_trainable_leaves(mode, monkeypatch):
    config = _config(mode)
    mesh, setup = _setup(config)
    state = jax.eval_shape(setup.init, jax.random.key(0))
    seen = {}
    real = step_module.accumulated_value_and_grad

    def spy(apply_fn, loss_fn, num_micro):
        def value_and_grad(params, batch):
            out = real(apply_fn, loss_fn, num_micro)(params, batch)
            seen["differentiated"], seen["grads"] = params, out[1]
            return out
        return value_and_grad

    monkeypatch.setattr(step_module, "accumulated_value_and_grad", spy)
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        jax.eval_shape(step_module.make_train_step(config, setup), state, random_batch(config, 1))
    trainable, frozen = split_trainable(state["params"], config.optim)
    n_train, n_frozen = len(jax.tree.leaves(trainable)), len(jax.tree.leaves(frozen))
    assert n_frozen > 0 and n_train > 0
    assert len(jax.tree.leaves(seen["differentiated"])) == n_train
    assert len(jax.tree.leaves(seen["grads"])) == n_train
    assert {p.shape for p in jax.tree.leaves(seen["grads"])} == {p.shape for p in jax.tree.leaves(trainable)}


def _saved_activation_bytes(mode: str) -> int:
    """Bytes jax saves for the backward pass of the model + loss, less the params (arguments: trainable;
    constants: the frozen ones closed over)."""
    config = _config(mode, scan=True)
    config.model.remat, config.model.dtype = "dots_saveable", "bfloat16"
    mesh, setup = _setup(config)
    params = setup.compiled_init(jax.random.key(0))["params"]
    trainable, frozen = split_trainable(params, config.optim)
    batch = random_batch(config, 1)

    def loss(trainable):
        out = setup.objective.model_outputs(setup.model, step_module.merge_trainable(trainable, frozen), batch)
        return setup.objective(out, batch, {})[0]

    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        res = saved_residuals(loss, trainable)
    return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, src in res
               if not src.startswith(("from the argument", "from a constant")) and a.ndim > 2)


@pytest.mark.slow
def test_lora_saves_no_more_activations_than_full_fine_tuning_under_dots_saveable():
    full, lora = _saved_activation_bytes(""), _saved_activation_bytes("lora")
    assert 0 < lora <= full, (lora, full)


_BERNOULLI = jax.random.bernoulli


class _Recorder:
    """Wraps jax.random.bernoulli: every mask drawn (under jit and scan too) is recorded as numpy."""

    def __init__(self, monkeypatch):
        self.masks, real = [], _BERNOULLI

        def bernoulli(key, p=0.5, shape=None, **kw):
            keep = real(key, p, shape, **kw)
            jax.debug.callback(lambda m: self.masks.append(np.asarray(m)), keep, ordered=True)
            return keep

        monkeypatch.setattr(jax.random, "bernoulli", bernoulli)


def _dropout_config(grad_accum: int = 1):
    config = _config("lora", scan=True)
    config.model.lora.update(dropout=0.5, kernels=r"image/.*/attn/qkv")  # one adapter per layer, image tower
    config.optim.grad_accum_steps = grad_accum
    return config


@pytest.mark.slow
def test_lora_dropout_differs_per_scanned_layer_and_follows_the_rate(monkeypatch):
    config = _dropout_config()
    _, setup = _setup(config)
    params = setup.compiled_init(jax.random.key(0))["params"]
    batch = random_batch(config, 1)
    rec = _Recorder(monkeypatch)
    model = setup.model.with_dropout_rng(jax.random.key(3))
    jax.block_until_ready(setup.objective.model_outputs(model, params, batch))
    jax.effects_barrier()
    assert len(rec.masks) == config.model.image.depth == 2
    first, second = rec.masks
    assert first.shape == second.shape and not np.array_equal(first, second)
    assert abs(first.mean() - 0.5) < 0.05 and abs(second.mean() - 0.5) < 0.05
    # independent draws: the two layers agree on about half the entries, not all
    assert abs((first == second).mean() - 0.5) < 0.05


def _step_masks(config, step: int, monkeypatch) -> list:
    _, setup = _setup(config)
    state = setup.compiled_init(jax.random.key(0))
    state["step"] = jnp.asarray(step, state["step"].dtype)
    rec = _Recorder(monkeypatch)
    jax.block_until_ready(jax.jit(step_module.make_train_step(config, setup))(state, random_batch(config, 1)))
    jax.effects_barrier()
    return rec.masks


@pytest.mark.slow
def test_lora_dropout_per_micro_batch_and_step_and_the_same_on_replay(monkeypatch):
    config = _dropout_config(grad_accum=2)
    masks = _step_masks(config, 5, monkeypatch)
    # GradCache: embed pass (micro-batches 0, 1; 2 layers each), then per micro-batch a forward
    # again (recomputed for its VJP) with the same masks as its embed pass
    embed = masks[:4]
    assert len(masks) >= 8
    m0, m1 = embed[:2], embed[2:]
    assert not np.array_equal(m0[0], m1[0]) and not np.array_equal(m0[1], m1[1])
    for mb in (m0, m1):  # every later draw repeats one of this step's embed-pass masks
        assert not np.array_equal(mb[0], mb[1])
    for later in masks[4:]:
        assert any(np.array_equal(later, e) for e in embed)
    assert any(np.array_equal(later, m0[0]) for later in masks[4:])
    assert any(np.array_equal(later, m1[0]) for later in masks[4:])
    again = _step_masks(config, 5, monkeypatch)  # the same state and step (a resumed run): the same masks
    assert len(again) == len(masks) and all(np.array_equal(u, v) for u, v in zip(masks, again))
    other = _step_masks(config, 6, monkeypatch)
    assert not np.array_equal(other[0], masks[0])
