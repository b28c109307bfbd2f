"""The generative term of the captioners (CoCa, CLIPS): next-token cross-entropy, padding masked.

The models compute the per-example part (`token_nll`: summed NLL and token count per
caption, [B] floats) so that the big [B, L, V] logits never leave the model's forward
pass (gradient accumulation caches only per-example outputs, see grad_accumulation.py).
`caption_loss` then forms the global-batch mean over real tokens,

    caption_loss = Σ_b nll_b / Σ_b tokens_b,

which the objective (bigvl/losses/objective.py) weights by `loss.caption_weight`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_nll(logits: jax.Array, labels: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """logits [B,L,V], labels int [B,L] → (summed NLL float32 [B], real-token count float32 [B]).

    Positions whose label is `pad_id` count for nothing.
    """
    mask = (labels != pad_id).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.sum(nll * mask, axis=1), jax.lax.stop_gradient(jnp.sum(mask, axis=1))


def caption_loss(outputs: dict) -> jax.Array:
    """Mean NLL per real token over the global batch, float32 scalar."""
    return jnp.sum(outputs["caption_nll"]) / jnp.maximum(jnp.sum(outputs["caption_tokens"]), 1.0)
