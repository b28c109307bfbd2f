"""bigvl.models.matmul: the Dense matmul whose kernel gradient is one row-major matmul, against a
float64 NumPy reference, flax's nn.Dense, and what XLA's CPU backend compiles it to."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.models.matmul import dense_dot, flax_dot_general, resolve_weight_grad


def reference(x, kernel, cotangent, in_dims):
    """y, dL/dx, dL/dkernel for L = Σ y·cotangent, in float64 by tensordot."""
    x, kernel, cotangent = (np.asarray(a, np.float64) for a in (x, kernel, cotangent))
    out_dims = kernel.ndim - in_dims
    y = np.tensordot(x, kernel, in_dims)
    dx = np.tensordot(cotangent, kernel, (list(range(cotangent.ndim - out_dims, cotangent.ndim)),
                                          list(range(in_dims, kernel.ndim))))
    lead = x.ndim - in_dims
    dk = np.tensordot(x, cotangent, (list(range(lead)), list(range(lead))))
    return y, dx, dk


@pytest.mark.parametrize("x_shape,k_shape,in_dims", [
    ((3, 5, 8), (8, 16), 1),  # in < out: x is transposed
    ((3, 5, 16), (16, 4), 1),  # in > out: the cotangent is transposed, then the product
    ((2, 5, 8), (8, 3, 2, 4), 1),  # a fused qkv projection
    ((2, 5, 2, 4), (2, 4, 8), 2),  # an attention output projection (heads, head_dim) → width
])
@pytest.mark.parametrize("weight_grad", ["xla", "transposed"])
def test_dense_dot_values_and_gradients_match_float64(x_shape, k_shape, in_dims, weight_grad):
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=x_shape).astype(np.float32), rng.normal(size=k_shape).astype(np.float32)
    cotangent = rng.normal(size=x_shape[:len(x_shape) - in_dims] + k_shape[in_dims:]).astype(np.float32)
    y_ref, dx_ref, dk_ref = reference(x, kernel, cotangent, in_dims)

    y, vjp = jax.vjp(lambda a, b: dense_dot(a, b, in_dims, weight_grad), x, kernel)
    dx, dk = vjp(jnp.asarray(cotangent))
    assert dk.shape == kernel.shape and dk.dtype == jnp.float32
    for got, want in ((y, y_ref), (dx, dx_ref), (dk, dk_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_dense_dot_refuses_an_unresolved_mode():
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        dense_dot(jnp.ones((2, 3)), jnp.ones((3, 4)), 1, "auto")


def test_flax_dense_with_the_transposed_gradient_is_flax_dense():
    """Same params, outputs and gradients as nn.Dense's own lax.dot_general; "xla" is flax's default."""
    assert flax_dot_general("xla") is None
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6, 12)), jnp.float32)
    plain, ours = nn.Dense(20), nn.Dense(20, dot_general=flax_dot_general("transposed"))
    params = plain.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)

    def loss(module, p):
        return jnp.sum(jnp.sin(module.apply(p, x)))
    (value, grads), (ref_value, ref_grads) = (jax.value_and_grad(lambda p, m=m: loss(m, p))(params)
                                              for m in (ours, plain))
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads, ref_grads)


def dots_outside_library_fusions(weight_grad: str) -> list[str]:
    """The dots XLA:CPU compiles the gradient of a two-layer MLP into that are not YNNPACK
    fusions (they run on XLA's Eigen fallback), as HLO lines of the entry computation."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x, w1, w2 = jnp.ones((256, 64)), jax.random.normal(k1, (64, 128)), jax.random.normal(k2, (128, 64))

    def loss(w1, w2):
        return jnp.sum(dense_dot(jnp.tanh(dense_dot(x, w1, 1, weight_grad)), w2, 1, weight_grad) ** 2)
    hlo = jax.jit(jax.grad(loss, (0, 1))).lower(w1, w2).compile().as_text()
    entry = hlo[hlo.index("\nENTRY"):]
    return [line for line in entry.splitlines() if re.search(r"\sdot\(", line)]


def test_transposed_weight_gradients_run_as_library_dots_on_the_cpu():
    """The reason for the mode: autodiff's kernel gradients contract the lhs's leading axis, which
    XLA:CPU's YNNPACK path refuses; the transposed form leaves no dot outside a YNNPACK fusion."""
    assert dots_outside_library_fusions("transposed") == []
    # If this fails, XLA now runs transposed-lhs dots on YNNPACK and "auto" may go back to "xla".
    assert len(dots_outside_library_fusions("xla")) == 2


def test_resolve_weight_grad():
    assert resolve_weight_grad("auto", backend="cpu") == "transposed"
    assert resolve_weight_grad("auto", backend="gpu") == "xla"
    assert resolve_weight_grad("auto", backend="tpu") == "xla"
    assert resolve_weight_grad("auto", remat="full", backend="cpu") == "transposed"
    # the custom gradient hides the forward dots from dot-saving remat policies
    assert resolve_weight_grad("auto", remat="dots_saveable", backend="cpu") == "xla"
    assert resolve_weight_grad("xla", backend="cpu") == "xla"
    assert resolve_weight_grad("transposed", backend="tpu") == "transposed"
    with pytest.raises(ValueError, match="'model.weight_grad_dot'.*dots_saveable"):
        resolve_weight_grad("transposed", remat="dots_saveable")
    with pytest.raises(ValueError, match="'model.weight_grad_dot': 'row_major' is not one of"):
        resolve_weight_grad("row_major")
