"""CLOOB against a float64 reference from the paper's formulas, a case worked by hand from the
released code's formulas (ml-jku/cloob methods.py), the tiled version, and 8 devices == one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses.cloob import cloob_loss, hopfield_retrieval, tiled_cloob_loss
from bigvl.parallel.mesh import make_mesh


def _unit_rows(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _pairs(b, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d))
    return _unit_rows(x), _unit_rows(rng.normal(size=(b, d)) + 0.8 * x)


def _reference(x, y, inv_tau, beta):
    """float64, written from the paper (Fürst et al. 2022, eqs. for Ret and L_InfoLOOB), loops over rows."""
    def ret(states, store):
        out = []
        for xi in states:
            w = np.exp(beta * store @ xi - np.max(beta * store @ xi))
            r = store.T @ (w / w.sum())
            out.append(r / np.linalg.norm(r))
        return np.array(out)

    def info_loob(a, c):
        total = 0.0
        for i in range(len(a)):
            negatives = [np.exp(inv_tau * a[i] @ c[j]) for j in range(len(c)) if j != i]
            total += -np.log(np.exp(inv_tau * a[i] @ c[i]) / np.sum(negatives))
        return total / len(a)

    u_x, u_y, v_x, v_y = ret(x, x), ret(y, x), ret(x, y), ret(y, y)
    return (info_loob(u_x, u_y) + info_loob(v_y, v_x)) / inv_tau


@pytest.mark.parametrize("inv_tau,beta", [(14.3, 14.3), (30.0, 8.0)])
def test_cloob_matches_float64_reference(inv_tau, beta):
    x, y = _pairs(12, 8, seed=1)
    want = _reference(x, y, inv_tau, beta)
    np.testing.assert_allclose(cloob_loss(jnp.float32(x), jnp.float32(y), inv_tau, beta), want, rtol=2e-5)
    np.testing.assert_allclose(tiled_cloob_loss(jnp.float32(x), jnp.float32(y), inv_tau, beta, tile_size=5),
                               want, rtol=2e-5)


def test_cloob_two_orthogonal_pairs_worked_from_the_released_code():
    """B = 2, x = y = (e1, e2). The code's Hopfield layer (static patterns, scaling β) gives every
    retrieval norm((p, 1 − p)) or its mirror, p = e^β / (e^β + 1); its infoLOOB_loss with one
    negative per row is τ · mean_i (a_i·c_{1−i} − a_i·c_i) / τ, so the loss is
    2 · (2p(1 − p) / (p² + (1 − p)²) − 1), whatever τ."""
    beta = 2.0
    p = np.exp(beta) / (np.exp(beta) + 1)
    want = 2 * (2 * p * (1 - p) / (p ** 2 + (1 - p) ** 2) - 1)
    eye = jnp.eye(2, 4, dtype=jnp.float32)
    np.testing.assert_allclose(hopfield_retrieval(eye, eye, beta)[0, :2],
                               np.array([p, 1 - p]) / np.hypot(p, 1 - p), rtol=1e-6)
    for inv_tau in (1.0, 14.3):
        np.testing.assert_allclose(cloob_loss(eye, eye, inv_tau, beta), want, rtol=1e-5)


def test_tiled_cloob_gradients_equal_plain():
    x, y = (jnp.float32(a) for a in _pairs(24, 8, seed=2))
    plain = jax.grad(cloob_loss, argnums=(0, 1, 2))(x, y, 10.0, 5.0)
    tiled = jax.grad(tiled_cloob_loss, argnums=(0, 1, 2))(x, y, 10.0, 5.0, 8)
    for got, want in zip(tiled, plain):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", [cloob_loss, tiled_cloob_loss])
def test_cloob_on_eight_devices_equals_one(loss):
    x, y = (np.float32(a) for a in _pairs(32, 16, seed=3))
    step = jax.jit(jax.value_and_grad(lambda a, b, s: loss(a, b, s, 14.3), argnums=(0, 1, 2)))
    args = (x, y, np.float32(14.3))
    single_value, single_grads = step(*jax.device_put(args, jax.devices()[0]))
    mesh = make_mesh({"data": 8})
    rows = NamedSharding(mesh, P(("data", "fsdp")))
    sharded = [jax.device_put(a, s) for a, s in zip(args, (rows, rows, NamedSharding(mesh, P())))]
    assert len(sharded[0].sharding.device_set) == 8
    value, grads = step(*sharded)
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
