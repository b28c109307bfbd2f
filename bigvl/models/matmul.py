"""The Dense layers' matmul, with a choice of how its kernel gradient is computed.

A Dense layer y = x · W (x [M, K] rows of tokens, W [K, N]) has the kernel gradient
dW = xᵀ · dy [K, N]. jax's autodiff emits it as one dot_general contracting the *leading*
(token) axis of both x and dy. XLA's CPU backend (jax 0.10) hands a dot to YNNPACK only when
its left operand contracts its last axis (`IsDotSupportedByYnn` in
xla/backends/cpu/ynn_support.cc: YNNPACK could transpose while packing, "but we don't currently
support generating the necessary transposes"). XLA's layout assignment makes some of these dots
row-major by copying an operand transposed (in the S64 step: the attention projections', copying
dy, the larger operand); the rest (the MLP's, about a fifth of the matmul FLOPs) run on XLA's
Eigen fallback after a transposed copy of dy (docs/results/cpu_speed.md).

`weight_grad="transposed"` computes the same gradient as one row-major matmul instead: the
smaller of x and dy is transposed explicitly, behind `lax.optimization_barrier` (XLA's transpose
folding would otherwise fold it back into the dot), and the dot runs on YNNPACK. The values
are the same sums in another order (float tolerance). "xla" is jax's own autodiff.

`model.weight_grad_dot` picks it (`resolve_weight_grad`): "auto" is "transposed" on the CPU
and "xla" elsewhere (GPU and TPU dots take transposed operands natively, and the barrier would
only cost a copy). The custom VJP is opaque to jax.checkpoint policies, which would no longer
see the forward dots: under 'dots_saveable' remat "auto" keeps "xla", and "transposed" is refused.
"""
from __future__ import annotations

import functools
import math

import jax
from jax import lax

WEIGHT_GRADS = ("auto", "xla", "transposed")
DOT_REMAT_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable")  # policies that match dot_general


def resolve_weight_grad(mode: str, remat: str = "none", backend: str | None = None) -> str:
    """`model.weight_grad_dot` → "xla" or "transposed" (see the module docstring).

    backend: default `jax.default_backend()`. Raises ValueError naming the key for a bad value,
    or for "transposed" under a remat policy that saves dots.
    """
    if mode not in WEIGHT_GRADS:
        raise ValueError(f"config key 'model.weight_grad_dot': {mode!r} is not one of {WEIGHT_GRADS}")
    if mode == "auto":
        on_cpu = (backend or jax.default_backend()) == "cpu"
        return "transposed" if on_cpu and remat not in DOT_REMAT_POLICIES else "xla"
    if mode == "transposed" and remat in DOT_REMAT_POLICIES:
        raise ValueError(f"config key 'model.weight_grad_dot': 'transposed' hides the dense dots from "
                         f"model.remat {remat!r} (they would be recomputed, not saved); use 'auto' or 'xla'")
    return mode


def _dims(x_ndim: int, in_dims: int) -> tuple:
    """dot_general dimension numbers contracting x's last `in_dims` axes with the kernel's first."""
    return (tuple(range(x_ndim - in_dims, x_ndim)), tuple(range(in_dims))), ((), ())


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dense_transposed(x: jax.Array, kernel: jax.Array, in_dims: int) -> jax.Array:
    return lax.dot_general(x, kernel, _dims(x.ndim, in_dims))


def _forward(x, kernel, in_dims):
    return _dense_transposed(x, kernel, in_dims), (x, kernel)


def _backward(in_dims, residuals, g):
    x, kernel = residuals
    out_dims = kernel.ndim - in_dims
    dx = lax.dot_general(g, kernel, ((tuple(range(g.ndim - out_dims, g.ndim)), tuple(range(in_dims, kernel.ndim))),
                                     ((), ())))
    k_in, rows = math.prod(kernel.shape[:in_dims]), math.prod(x.shape[:x.ndim - in_dims])
    x2, g2 = x.reshape(rows, k_in), g.reshape(rows, -1)
    if k_in <= g2.shape[1]:  # transpose the smaller operand: [K, M] · [M, N]
        dk = lax.optimization_barrier(x2.T) @ g2
    else:  # ([N, M] · [M, K])ᵀ, a barrier on each side so XLA folds neither transpose into the dot
        dk = lax.optimization_barrier(lax.optimization_barrier(g2.T) @ x2).T
    return dx, dk.reshape(kernel.shape).astype(kernel.dtype)


_dense_transposed.defvjp(_forward, _backward)


def dense_dot(x: jax.Array, kernel: jax.Array, in_dims: int = 1, weight_grad: str = "xla") -> jax.Array:
    """x [..., *in] · kernel [*in, *out] → [..., *out], contracting x's last `in_dims` axes.

    weight_grad: "xla" (jax's autodiff) or "transposed" (the kernel gradient as one row-major
    matmul; see the module docstring). Both give the same values and gradients to float tolerance.
    """
    if weight_grad == "transposed":
        return _dense_transposed(x, kernel, in_dims)
    if weight_grad != "xla":
        raise ValueError(f"weight_grad {weight_grad!r} must be 'xla' or 'transposed' (resolve 'auto' first)")
    return lax.dot_general(x, kernel, _dims(x.ndim, in_dims))


def flax_dot_general(weight_grad: str):
    """A `dot_general` for flax's nn.Dense(dot_general=...) computing the kernel gradient by
    `weight_grad`; None (flax's own lax.dot_general) for "xla"."""
    if weight_grad == "xla":
        return None

    def dot_general(x, kernel, dimension_numbers, precision=None, preferred_element_type=None):
        if precision is not None or preferred_element_type is not None or dimension_numbers != _dims(x.ndim, 1):
            return lax.dot_general(x, kernel, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
        return dense_dot(x, kernel, 1, weight_grad)
    return dot_general
