"""Schedules against their formulas; the weight-decay mask on a real parameter tree."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigvl.config import base_config
from bigvl.models.heads import logit_scale
from bigvl.train.optimizer import clamp_log_logit_scale, decay_mask, make_optimizer, make_schedule


def _optim(**kw):
    c = base_config().optim
    c.update(kw)
    return c


def test_warmup_cosine_matches_formula():
    cfg = _optim(lr=1e-3, warmup_steps=10, schedule="cosine", end_lr_frac=0.1)
    sched = make_schedule(cfg, total_steps=110)
    assert float(sched(0)) == 0.0
    assert math.isclose(float(sched(5)), 5e-4, rel_tol=1e-6)
    assert math.isclose(float(sched(10)), 1e-3, rel_tol=1e-6)
    for step in (30, 60, 110):
        frac = (step - 10) / 100
        expected = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * frac))
        assert math.isclose(float(sched(step)), expected, rel_tol=1e-5)


def test_a_run_shorter_than_its_warmup_stays_on_the_warmup_ramp():
    """total_steps < warmup_steps (a smoke run of a real config): every step's lr is lr·step/warmup."""
    for schedule in ("cosine", "rsqrt", "constant"):
        sched = make_schedule(_optim(lr=1e-3, warmup_steps=50, schedule=schedule), total_steps=20)
        for step in (0, 7, 19):
            assert math.isclose(float(sched(step)), 1e-3 * step / 50, rel_tol=1e-6, abs_tol=1e-12), (schedule, step)


def test_rsqrt_after_warmup():
    sched = make_schedule(_optim(lr=1.0, warmup_steps=100, schedule="rsqrt"), total_steps=1000)
    assert math.isclose(float(sched(100)), 1.0, rel_tol=1e-2)
    assert math.isclose(float(sched(400)), (400 / 100) ** -0.5, rel_tol=1e-2)


def test_decay_mask_excludes_vectors_and_patterns():
    params = {"image": {"pos_embedding": jnp.zeros((1, 4, 8)), "Dense_0": {"kernel": jnp.zeros((8, 8)),
                                                                           "bias": jnp.zeros(8)}},
              "LayerNorm_0": {"scale": jnp.zeros(8)}, "log_logit_scale": jnp.zeros(())}
    mask = decay_mask(params, [".*pos_embedding.*"])
    assert mask == {"image": {"pos_embedding": False, "Dense_0": {"kernel": True, "bias": False}},
                    "LayerNorm_0": {"scale": False}, "log_logit_scale": False}


def test_adamw_decays_only_masked_params():
    cfg = _optim(lr=0.1, warmup_steps=0, schedule="constant", weight_decay=0.5, clip_norm=0.0, no_decay=[])
    tx, _ = make_optimizer(cfg, total_steps=10)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    zero_grads = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], 1 - 0.1 * 0.5, rtol=1e-6)  # decoupled decay lr·wd·w
    np.testing.assert_allclose(new["b"], 1.0)


def test_mu_dtype_stores_the_first_moment_in_bfloat16():
    cfg = _optim(mu_dtype="bfloat16", warmup_steps=0, schedule="constant", clip_norm=0.0)
    tx, _ = make_optimizer(cfg, total_steps=10)
    params = {"w": jnp.ones((4, 4), jnp.float32), "b": jnp.ones(4, jnp.float32)}
    state = tx.init(params)
    adam = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    assert len(adam) == 1
    assert {x.dtype for x in jax.tree.leaves(adam[0].mu)} == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(adam[0].nu)} == {jnp.dtype(jnp.float32)}
    grads = {"w": jnp.full((4, 4), 0.5), "b": jnp.full(4, 0.5)}
    _, state = tx.update(grads, state, params)
    adam = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)][0]
    assert adam.mu["w"].dtype == jnp.bfloat16  # stays bf16 after an update: (1 - b1) * 0.5
    np.testing.assert_allclose(np.asarray(adam.mu["w"], np.float32), 0.05, rtol=1e-2)


def test_logit_scale_is_clamped_and_comes_back_down():
    """Drive the scale up (loss −scale) for 120 Adam steps, then down (loss +scale) for 80: the param
    never passes log 100 and, its gradient never cut, comes back. (With a cap in the forward pass
    instead, min(exp(p), 100) has zero gradient above 100: Adam's momentum carries p past the cap
    and it never returns.)"""
    cfg = base_config().optim
    cfg.lr, cfg.warmup_steps, cfg.clip_norm = 0.05, 0, 0.0
    tx, _ = make_optimizer(cfg, total_steps=1000)
    params = {"log_logit_scale": jnp.float32(math.log(1 / 0.07)), "w": jnp.ones((2, 2))}
    state = tx.init(params)

    @jax.jit
    def step(params, state, sign):
        grads = jax.grad(lambda p: sign * logit_scale(p["log_logit_scale"]) + jnp.sum(p["w"] ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return clamp_log_logit_scale(optax.apply_updates(params, updates), 100.0), state

    highest = -np.inf
    for _ in range(120):
        params, state = step(params, state, -1.0)
        highest = max(highest, float(params["log_logit_scale"]))
    assert highest <= math.log(100.0) + 1e-6
    assert float(params["log_logit_scale"]) > math.log(99.0)  # it reached the cap
    for _ in range(80):
        params, state = step(params, state, 1.0)
    assert float(logit_scale(params["log_logit_scale"])) < 50.0
