"""bigvl.models.matmul: the Dense matmul whose kernel gradient is one row-major matmul, against a
float64 NumPy reference, flax's nn.Dense, and what XLA's CPU backend compiles it to."""

import flax.linen as nn
import jax
import jax.extend.core  # noqa: F401  (jaxprs_in_params)
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


def gradient_dots(weight_grad: str) -> list[tuple[int, tuple[int, ...]]]:
    """(lhs rank, lhs contracting axes) of every dot_general in the jaxpr of a two-layer MLP's gradient:
    what jax emits, before any XLA pass (a property of the code, not of the compiler's fusions)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x, w1, w2 = jnp.ones((256, 64)), jax.random.normal(k1, (64, 128)), jax.random.normal(k2, (128, 64))

    def loss(w1, w2):
        return jnp.sum(dense_dot(jnp.tanh(dense_dot(x, w1, 1, weight_grad)), w2, 1, weight_grad) ** 2)
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lhs_contract, _), _ = eqn.params["dimension_numbers"]
                found.append((eqn.invars[0].aval.ndim, tuple(lhs_contract)))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)
    walk(jax.make_jaxpr(jax.grad(loss, (0, 1)))(w1, w2).jaxpr)
    return found


def test_transposed_weight_gradients_are_row_major_dots():
    """The reason for the mode: autodiff's kernel gradients contract the lhs's leading (token) axis,
    which XLA:CPU's YNNPACK path refuses (bigvl/models/matmul.py); the transposed form's every dot
    contracts its lhs's last axis. (Its values: test_dense_dot_values_and_gradients_match_float64.)"""
    transposed, xla = gradient_dots("transposed"), gradient_dots("xla")
    assert len(transposed) >= 6 and len(xla) >= 5  # 2 forward, 2 kernel gradients, 1–2 input gradients
    assert all(contract == (ndim - 1,) for ndim, contract in transposed), transposed
    assert sum(contract == (0,) for _, contract in xla) == 2, xla  # the two kernel gradients


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
