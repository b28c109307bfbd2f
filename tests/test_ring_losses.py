"""Ring / tiled contrastive losses: values against a float64 NumPy reference, gradients against
autodiff of the plain global-batch losses, and per-device memory from XLA's compiled
memory analysis (compile only, nothing that large is executed)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.losses import contrastive as losses
from bigvl.losses.ring import (
    all_gather_softmax_contrastive_loss,
    ring_sigmoid_contrastive_loss,
    tiled_softmax_contrastive_loss,
)
from bigvl.parallel.mesh import batch_sharding, make_mesh, replicated

MESHES = {"data8": {"data": 8}, "data2_fsdp4": {"data": 2, "fsdp": 4},
          "data2_fsdp2_tensor2": {"data": 2, "fsdp": 2, "tensor": 2}}
# (global batch, tile_size): the tile is the largest divisor of b = B / ring size <= tile_size.
SIZES = [(48, 4),  # b = 6 or 12 -> tiles of 3 or 4 (not b): several tiles per block
         (64, 1024)]  # one tile = the whole b x b block
SCALE, BIAS = 7.0, -3.0


def _embeddings(b, d, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    y = y + 0.5 * x  # correlated pairs, so the positives differ from the negatives
    return (x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True))


def _logsumexp(a, axis):
    top = a.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def reference_softmax_loss(x, y, scale):
    logits = scale * (x @ y.T)
    diag = np.diag(logits)
    return 0.5 * (np.mean(_logsumexp(logits, 1) - diag) + np.mean(_logsumexp(logits, 0) - diag))


def reference_sigmoid_loss(x, y, scale, bias):
    logits = scale * (x @ y.T) + bias
    labels = 2 * np.eye(len(x)) - 1
    return np.sum(np.logaddexp(0.0, -labels * logits)) / len(x)  # -log_sigmoid(z) = log(1 + e^-z)


def _assert_grads_close(got, want):
    for g, w in zip(got, want):
        w = np.asarray(w, np.float64)
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=1e-5, atol=1e-6 * np.abs(w).max())


@pytest.mark.parametrize("mesh_name", MESHES)
@pytest.mark.parametrize("batch,tile_size", SIZES)
def test_tiled_softmax_equals_plain_loss(mesh_name, batch, tile_size):
    mesh = make_mesh(MESHES[mesh_name])
    x, y = _embeddings(batch, 16)
    args = (jnp.float32(x), jnp.float32(y), jnp.float32(SCALE))
    loss = lambda x, y, s: tiled_softmax_contrastive_loss(x, y, s, mesh=mesh, tile_size=tile_size)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(float(value), reference_softmax_loss(x, y, SCALE), rtol=1e-5)
    _assert_grads_close(grads, jax.grad(losses.softmax_contrastive_loss, argnums=(0, 1, 2))(*args))


@pytest.mark.parametrize("mesh_name", MESHES)
@pytest.mark.parametrize("batch,tile_size", SIZES)
def test_ring_sigmoid_equals_plain_loss(mesh_name, batch, tile_size):
    mesh = make_mesh(MESHES[mesh_name])
    x, y = _embeddings(batch, 16, seed=1)
    args = (jnp.float32(x), jnp.float32(y), jnp.float32(SCALE), jnp.float32(BIAS))
    loss = lambda x, y, s, b: ring_sigmoid_contrastive_loss(x, y, s, b, mesh=mesh, tile_size=tile_size)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(*args)
    np.testing.assert_allclose(float(value), reference_sigmoid_loss(x, y, SCALE, BIAS), rtol=1e-5)
    _assert_grads_close(grads, jax.grad(losses.sigmoid_contrastive_loss, argnums=(0, 1, 2, 3))(*args))


def test_all_gather_softmax_equals_plain_loss():
    mesh = make_mesh(MESHES["data2_fsdp4"])
    x, y = _embeddings(32, 16, seed=2)
    args = (jnp.float32(x), jnp.float32(y), jnp.float32(SCALE))
    loss = lambda x, y, s: all_gather_softmax_contrastive_loss(x, y, s, mesh=mesh)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(float(value), reference_softmax_loss(x, y, SCALE), rtol=1e-5)
    _assert_grads_close(grads, jax.grad(losses.softmax_contrastive_loss, argnums=(0, 1, 2))(*args))


def test_bfloat16_inputs_compute_in_float32():
    mesh = make_mesh(MESHES["data8"])
    x, y = (jnp.asarray(a, jnp.bfloat16) for a in _embeddings(32, 16, seed=3))
    x64, y64 = (np.asarray(a, np.float64) for a in (x, y))  # the values the loss actually sees
    tiled = jax.jit(jax.value_and_grad(
        lambda x, y: tiled_softmax_contrastive_loss(x, y, SCALE, mesh=mesh, tile_size=2), argnums=(0, 1)))
    value, grads = tiled(x, y)
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.bfloat16 for g in grads)
    np.testing.assert_allclose(float(value), reference_softmax_loss(x64, y64, SCALE), rtol=1e-5)
    sigmoid = jax.jit(lambda x, y: ring_sigmoid_contrastive_loss(x, y, SCALE, BIAS, mesh=mesh))
    np.testing.assert_allclose(float(sigmoid(x, y)), reference_sigmoid_loss(x64, y64, SCALE, BIAS),
                               rtol=1e-5)
    plain_grads = jax.grad(losses.softmax_contrastive_loss, argnums=(0, 1))(x, y, SCALE)
    for g, w in zip(grads, plain_grads):  # float32 gradients rounded once to bfloat16: within one ulp
        np.testing.assert_allclose(np.float32(g), np.float32(w), rtol=2 ** -7, atol=1e-6)


def test_batch_not_divisible_by_the_ring_is_a_clear_error():
    mesh = make_mesh(MESHES["data2_fsdp2_tensor2"])
    x = jnp.zeros((6, 4))
    with pytest.raises(ValueError, match="not divisible by the 4 devices"):
        tiled_softmax_contrastive_loss(x, x, 1.0, mesh=mesh)
    with pytest.raises(ValueError, match="not divisible by the 4 devices"):
        ring_sigmoid_contrastive_loss(x, x, 1.0, 0.0, mesh=mesh)


# ---- memory: compiled per-device temp buffers of value_and_grad (no execution) ----


def _temp_bytes(loss, mesh, batch, num_scalars, dim=64):
    embeds = jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=batch_sharding(mesh))
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated(mesh))
    grad_shardings = (batch_sharding(mesh),) * 2 + (replicated(mesh),) * num_scalars
    step = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(2 + num_scalars))),
                   out_shardings=(replicated(mesh), grad_shardings))
    with jax.set_mesh(mesh):
        compiled = step.lower(embeds, embeds, *[scalar] * num_scalars).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_tiled_softmax_memory_is_linear_in_batch_while_plain_is_quadratic():
    mesh = make_mesh({"data": 8})
    tiled = lambda x, y, s: tiled_softmax_contrastive_loss(x, y, s, mesh=mesh, tile_size=256)
    small, large = 16384, 32768
    tiled_small, tiled_large = _temp_bytes(tiled, mesh, small, 1), _temp_bytes(tiled, mesh, large, 1)
    assert tiled_large < large ** 2 * 4 / 1000  # 4 MiB vs 4 GiB of global logits
    assert tiled_large / tiled_small < 2.5
    assert _temp_bytes(losses.softmax_contrastive_loss, mesh, large, 1) >= large ** 2 * 4 / 8


def test_ring_sigmoid_memory_does_not_grow_with_the_number_of_hops():
    per_device_batch, temps = 2048, []
    for ring in (4, 8):  # same b per device, twice the hops and the global batch
        mesh = make_mesh({"data": ring}, devices=jax.devices()[:ring])
        loss = lambda x, y, s, b, mesh=mesh: ring_sigmoid_contrastive_loss(x, y, s, b, mesh=mesh, tile_size=256)
        temps.append(_temp_bytes(loss, mesh, per_device_batch * ring, 2))
    assert temps[1] <= 1.1 * temps[0]
    assert temps[1] < per_device_batch ** 2 * 4  # not even one b x b block of logits
