"""Contrastive losses against a float64 NumPy reference, and sharded == single-device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses.contrastive import sigmoid_contrastive_loss, softmax_contrastive_loss
from bigvl.parallel.mesh import make_mesh
from tests.helpers.numeric_reference import finite_difference_grads

# ---- independent float64 reference: explicit loops over rows and columns ----

def _log_sum_exp(values):
    top = max(values)
    return top + np.log(sum(np.exp(v - top) for v in values))


def reference_softmax_loss(x, y, scale):
    b = len(x)
    logits = [[scale * float(np.dot(x[i], y[j])) for j in range(b)] for i in range(b)]
    i2t = sum(_log_sum_exp(logits[i]) - logits[i][i] for i in range(b)) / b
    t2i = sum(_log_sum_exp([logits[i][j] for i in range(b)]) - logits[j][j] for j in range(b)) / b
    return 0.5 * (i2t + t2i)


def reference_sigmoid_loss(x, y, scale, bias):
    b, total = len(x), 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            total += -np.log1p(np.exp(-z * (scale * float(np.dot(x[i], y[j])) + bias)))  # log_sigmoid
    return -total / b


def _embeddings(b, d, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    y = y + 0.5 * x  # correlated pairs, so the positives actually differ from negatives
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x, y


CASES = {
    "softmax": (softmax_contrastive_loss, reference_softmax_loss, (np.float64(7.0),)),
    "sigmoid": (sigmoid_contrastive_loss, reference_sigmoid_loss, (np.float64(10.0), np.float64(-3.0))),
}


@pytest.mark.parametrize("name", CASES)
def test_value_and_grads_match_numpy_reference(name):
    loss_fn, reference, scalars = CASES[name]
    x, y = _embeddings(6, 4)
    args = (x, y, *scalars)
    argnums = tuple(range(len(args)))
    value, grads = jax.value_and_grad(loss_fn, argnums=argnums)(*(jnp.float32(a) for a in args))
    np.testing.assert_allclose(value, reference(*args), rtol=1e-5)
    for got, want in zip(grads, finite_difference_grads(reference, args)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_bf16_embeddings_upcast_to_float32(name):
    loss_fn, reference, scalars = CASES[name]
    x, y = _embeddings(16, 8, seed=1)
    x16, y16 = jnp.bfloat16(x), jnp.bfloat16(y)
    value = loss_fn(x16, y16, *scalars)
    assert value.dtype == jnp.float32
    # Exactly the float64 loss of the bf16-rounded inputs: no bf16 arithmetic inside.
    np.testing.assert_allclose(value, reference(np.float64(x16), np.float64(y16), *scalars), rtol=1e-5)


def test_sigmoid_normalisation_on_orthogonal_embeddings():
    # Orthonormal embeddings, scale 1, bias 0: positives have logit 1, negatives 0, so the loss is
    # (B * log(1 + e^-1) + B(B-1) * log 2) / B.
    b = 4
    eye = np.eye(b)
    want = np.log1p(np.exp(-1.0)) + (b - 1) * np.log(2.0)
    np.testing.assert_allclose(sigmoid_contrastive_loss(eye, eye, 1.0, 0.0), want, rtol=1e-6)


def test_metrics_count_argmax_hits():
    x = np.eye(4, dtype=np.float32)
    y = x[[0, 1, 3, 2]]  # images 2 and 3 see the other's text; texts likewise
    _, metrics = softmax_contrastive_loss(x, y, 10.0, return_metrics=True)
    assert float(metrics["i2t_accuracy"]) == 0.5 and float(metrics["t2i_accuracy"]) == 0.5
    _, metrics = sigmoid_contrastive_loss(x, x, 10.0, -5.0, return_metrics=True)
    assert float(metrics["i2t_accuracy"]) == 1.0 and float(metrics["t2i_accuracy"]) == 1.0


MESHES = {
    "data8": ({"data": 8}, P(("data", "fsdp"))),
    "data2_fsdp4": ({"data": 2, "fsdp": 4}, P(("data", "fsdp"))),
    "data2_fsdp2_tensor2": ({"data": 2, "fsdp": 2, "tensor": 2}, P(("data", "fsdp"), "tensor")),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mesh_name", MESHES)
def test_sharded_loss_and_grads_equal_single_device(name, mesh_name):
    loss_fn, _, scalars = CASES[name]
    mesh_cfg, embed_spec = MESHES[mesh_name]
    x, y = (np.float32(a) for a in _embeddings(32, 16, seed=2))
    args = (x, y, *(np.float32(s) for s in scalars))
    argnums = tuple(range(len(args)))
    step = jax.value_and_grad(loss_fn, argnums=argnums)

    single_value, single_grads = jax.jit(step)(*jax.device_put(args, jax.devices()[0]))

    mesh = make_mesh(mesh_cfg)
    embed = NamedSharding(mesh, embed_spec)
    shardings = (embed, embed) + (NamedSharding(mesh, P()),) * len(scalars)
    sharded_args = [jax.device_put(a, s) for a, s in zip(args, shardings)]
    value, grads = jax.jit(step, in_shardings=shardings)(*sharded_args)

    assert len(value.sharding.device_set) == 8  # really ran on the mesh
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
