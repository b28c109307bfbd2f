"""Gradient accumulation for contrastive losses: the full-batch gradient from K micro-batches.

A contrastive loss couples every pair of the batch, so summing per-micro-batch losses
would train on K small batches (fewer negatives), not on the configured one. bigvl uses
the GradCache construction (Gao et al. 2021), which gives the gradient of the loss over
the FULL batch, exactly (up to float rounding):

1. embed: run the model forward on each micro-batch without gradients and keep its
   outputs (embeddings [m, E], [m, T, E] ...; a few KB per example);
2. loss: evaluate the loss on the concatenated full-batch outputs and differentiate it
   with respect to those outputs only (cheap: no model in it);
3. backprop: run each micro-batch forward again and pull its slice of the output
   cotangents back to the params with a VJP, summing the param gradients.

Per-example outputs (any leaf with a leading batch axis) are cached; scalar outputs
(`logit_scale`, `logit_bias`) depend on the params only and get 1/K of their cotangent
in each micro-batch. The cost is one extra forward pass (4/3 of a step's FLOPs) and the
memory of a micro-batch's activations instead of the full batch's.

Micro-batch k holds rows k, k + K, k + 2K, ... of the batch: with the batch split over
the devices, every device keeps 1/K of its own rows per micro-batch (no communication),
and the outputs are put back in the original row order before the loss.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


def _constrain_micro(x: jax.Array) -> jax.Array:
    """[K, m, ...] stays split over the batch axes along m (a no-op without mesh rules)."""
    return nn.with_logical_constraint(x, (None, "batch") + (None,) * (x.ndim - 2))


def split_micro_batches(batch: Batch, num_micro: int) -> Batch:
    """{name: [B, ...]} → {name: [K, B/K, ...]}; micro-batch k holds rows k, k+K, k+2K, ..."""
    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} does not split into {num_micro} micro-batches")
        x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
        return _constrain_micro(jnp.swapaxes(x, 0, 1))
    return jax.tree.map(split, batch)


def merge_micro_batches(stacked: Any) -> Any:
    """Inverse of `split_micro_batches` for per-example leaves: [K, m, ...] → [K·m, ...]."""
    def merge(x):
        x = jnp.swapaxes(_constrain_micro(x), 0, 1)
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])
    return jax.tree.map(merge, stacked)


def accumulated_value_and_grad(apply_fn: Callable[[Any, Batch], dict], loss_fn: Callable[[dict, Batch], tuple],
                               num_micro: int) -> Callable[[Any, Batch], tuple]:
    """`jax.value_and_grad(lambda p: loss_fn(apply_fn(p, batch), batch), has_aux=True)`, computed in
    `num_micro` micro-batches (GradCache, see the module docstring).

    apply_fn(params, batch) → outputs dict: leaves with a leading batch axis [b, ...] (per
        example) or scalars (params-only, e.g. logit_scale). batch: {name: [B, ...]}.
    loss_fn(outputs, batch) → (loss scalar, aux), on the full-batch outputs and the full batch
        (differentiated with respect to the outputs only).
    Returns f(params, batch) → ((loss, aux), grads); with num_micro = 1 it is plain
    value_and_grad. B must be divisible by num_micro (and B / num_micro by the batch axes).
    """
    def full_batch(params, batch):
        return loss_fn(apply_fn(params, batch), batch)

    if num_micro == 1:
        return jax.value_and_grad(full_batch, has_aux=True)

    def value_and_grad(params, batch):
        micro = split_micro_batches(batch, num_micro)
        # 1. embed every micro-batch, no gradients (lax.map: one micro-batch live at a time)
        stacked = jax.lax.map(lambda mb: apply_fn(jax.lax.stop_gradient(params), mb), micro)
        is_scalar = jax.tree.map(lambda x: x.ndim == 1, stacked)  # [K] after stacking
        outputs = jax.tree.map(lambda x, s: x[0] if s else merge_micro_batches(x), stacked, is_scalar)
        # 2. the loss and its gradient w.r.t. the full-batch outputs
        (loss, aux), out_grads = jax.value_and_grad(loss_fn, has_aux=True)(outputs, batch)
        cotangents = jax.tree.map(
            lambda g, s: jnp.broadcast_to(g / num_micro, (num_micro,)) if s else split_micro_batches(g, num_micro),
            out_grads, is_scalar)

        # 3. recompute each micro-batch forward, pull its cotangents back to the params
        def backprop(grads, inputs):
            mb, cot = inputs
            _, vjp = jax.vjp(lambda p: apply_fn(p, mb), params)
            return jax.tree.map(jnp.add, grads, vjp(cot)[0]), None

        grads, _ = jax.lax.scan(backprop, jax.tree.map(jnp.zeros_like, params), (micro, cotangents))
        return (loss, aux), grads

    return value_and_grad
