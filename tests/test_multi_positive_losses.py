"""Multi-text losses against float64 NumPy references (explicit loops), and sharded == single-device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses.contrastive import softmax_contrastive_loss
from bigvl.losses.multi_text import multi_positive_softmax_loss, per_text_softmax_loss
from bigvl.parallel.mesh import make_mesh
from tests.helpers.numeric_reference import finite_difference_grads

# ---- independent float64 references: explicit loops over images, texts and slots ----

def _log_sum_exp(values):
    top = max(values)
    return top + np.log(sum(np.exp(v - top) for v in values))


def _logit(x, y, scale, i, j, t):
    return scale * float(np.dot(x[i], y[j, t]))


def reference_per_text_loss(x, y, scale, weights=None):
    b, t_count = y.shape[:2]
    weights = [1.0 / t_count] * t_count if weights is None else list(weights)
    total = 0.0
    for t in range(t_count):
        rows = [[_logit(x, y, scale, i, j, t) for j in range(b)] for i in range(b)]
        i2t = sum(_log_sum_exp(rows[i]) - rows[i][i] for i in range(b)) / b
        t2i = sum(_log_sum_exp([rows[i][j] for i in range(b)]) - rows[j][j] for j in range(b)) / b
        total += weights[t] * 0.5 * (i2t + t2i)
    return total


def reference_multi_positive_loss(x, y, scale):
    b, t_count = y.shape[:2]
    i2t = 0.0
    for i in range(b):
        all_texts = [_logit(x, y, scale, i, j, t) for j in range(b) for t in range(t_count)]
        norm = _log_sum_exp(all_texts)
        i2t += -sum(_logit(x, y, scale, i, i, t) - norm for t in range(t_count)) / t_count
    t2i = 0.0
    for j in range(b):
        for t in range(t_count):
            column = [_logit(x, y, scale, i, j, t) for i in range(b)]
            t2i += _log_sum_exp(column) - column[j]
    return 0.5 * (i2t / b + t2i / (b * t_count))


def _embeddings(b, t, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d))
    y = rng.normal(size=(b, t, d)) + 0.7 * x[:, None, :]  # each image's texts lean towards it
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    return x, y


WEIGHTS = np.array([0.7, 0.2, 0.4])
CASES = {
    "per_text": (per_text_softmax_loss, reference_per_text_loss),
    "per_text_weighted": (lambda x, y, s: per_text_softmax_loss(x, y, s, WEIGHTS),
                          lambda x, y, s: reference_per_text_loss(x, y, s, WEIGHTS)),
    "multi_positive": (multi_positive_softmax_loss, reference_multi_positive_loss),
}


@pytest.mark.parametrize("name", CASES)
def test_value_and_grads_match_numpy_reference(name):
    loss_fn, reference = CASES[name]
    x, y = _embeddings(4, 3, 3)
    args = (x, y, np.float64(5.0))
    value, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(*(jnp.float32(a) for a in args))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, reference(*args), rtol=1e-5)
    for got, want in zip(grads, finite_difference_grads(reference, args)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_bf16_embeddings_upcast_to_float32(name):
    loss_fn, reference = CASES[name]
    x, y = _embeddings(8, 3, 8, seed=1)
    x16, y16 = jnp.bfloat16(x), jnp.bfloat16(y)
    value = loss_fn(x16, y16, 7.0)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, reference(np.float64(x16), np.float64(y16), 7.0), rtol=1e-5)


@pytest.mark.parametrize("loss_fn", [per_text_softmax_loss, multi_positive_softmax_loss])
def test_one_text_per_image_is_the_clip_loss(loss_fn):
    x, y = _embeddings(8, 1, 6, seed=2)
    np.testing.assert_allclose(loss_fn(x, y, 9.0), softmax_contrastive_loss(x, y[:, 0], 9.0), rtol=1e-6)


def test_clips_two_positives_is_the_mean_of_two_clip_losses():
    x, y = _embeddings(8, 2, 6, seed=3)
    want = 0.5 * (softmax_contrastive_loss(x, y[:, 0], 9.0) + softmax_contrastive_loss(x, y[:, 1], 9.0))
    np.testing.assert_allclose(per_text_softmax_loss(x, y, 9.0), want, rtol=1e-6)


def test_multi_positive_optimum_spreads_mass_over_the_positives():
    # Orthonormal images, every text equal to its image: image i sees T texts at scale s and
    # (B-1)·T at 0, so i2t = log(T e^s + (B-1) T) - s and t2i = log(e^s + B - 1) - s.
    b, t, s = 4, 3, 5.0
    x = np.eye(b)
    y = np.repeat(x[:, None, :], t, axis=1)
    i2t = np.log(t * np.exp(s) + (b - 1) * t) - s
    t2i = np.log(np.exp(s) + b - 1) - s
    np.testing.assert_allclose(multi_positive_softmax_loss(x, y, s), 0.5 * (i2t + t2i), rtol=1e-6)


def test_metrics_count_argmax_hits():
    x = np.eye(4, dtype=np.float32)
    y = np.stack([0.9 * x, x[[0, 1, 3, 2]]], axis=1)  # slot 1 swaps the texts of images 2 and 3
    _, metrics = per_text_softmax_loss(x, y, 10.0, return_metrics=True)
    assert float(metrics["i2t_accuracy"]) == 0.75 and float(metrics["t2i_accuracy"]) == 0.75
    _, metrics = multi_positive_softmax_loss(x, y, 10.0, return_metrics=True)
    # images 2 and 3 score highest with the other's slot-1 text; texts (2, 1), (3, 1) likewise
    assert float(metrics["i2t_accuracy"]) == 0.5 and float(metrics["t2i_accuracy"]) == 0.75


def test_bad_shapes_and_weights_raise():
    x, y = _embeddings(4, 2, 3)
    with pytest.raises(ValueError, match="text_embeds"):
        per_text_softmax_loss(x, y[:, 0], 1.0)
    with pytest.raises(ValueError, match="text_embeds"):
        multi_positive_softmax_loss(x, y[:3], 1.0)
    with pytest.raises(ValueError, match="weights"):
        per_text_softmax_loss(x, y, 1.0, weights=np.ones(3))


@pytest.mark.parametrize("name", CASES)
def test_sharded_loss_and_grads_equal_single_device(name):
    loss_fn, _ = CASES[name]
    x, y = (np.float32(a) for a in _embeddings(32, 3, 16, seed=4))
    args = (x, y, np.float32(8.0))
    step = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))

    single_value, single_grads = jax.jit(step)(*jax.device_put(args, jax.devices()[0]))

    mesh = make_mesh({"data": 8})
    batch = NamedSharding(mesh, P(("data", "fsdp")))
    shardings = (batch, batch, NamedSharding(mesh, P()))
    sharded_args = [jax.device_put(a, s) for a, s in zip(args, shardings)]
    value, grads = jax.jit(step, in_shardings=shardings)(*sharded_args)

    assert len(value.sharding.device_set) == 8  # really ran on the mesh
    assert len(sharded_args[1].sharding.device_set) == 8
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
