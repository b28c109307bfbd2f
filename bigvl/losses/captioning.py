"""The generative term of the captioners (CoCa, CLIPS): next-token cross-entropy, padding masked.

The models compute the per-example part (`bigvl.models.decoder.token_nll`: summed NLL and token count per
caption, [B] floats) so that the big [B, L, V] logits never leave the model's forward
pass (gradient accumulation caches only per-example outputs, see grad_accumulation.py).
`caption_loss` then forms the global-batch mean over real tokens,

    caption_loss = Σ_b nll_b / Σ_b tokens_b,

which the objective (bigvl/losses/objective.py) weights by `loss.caption_weight`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def caption_loss(outputs: dict) -> jax.Array:
    """Mean NLL per real token over the global batch, float32 scalar."""
    return jnp.sum(outputs["caption_nll"]) / jnp.maximum(jnp.sum(outputs["caption_tokens"]), 1.0)
