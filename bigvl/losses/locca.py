"""SigLIP 2's LocCa decoder term: next-token cross-entropy over the target positions, mean per token.

The model (`bigvl.models.locca.LoccaTwoTower`) computes the per-example summed NLL and target-token
count ([B] floats, `bigvl.models.decoder.token_nll`: label = pad counts for nothing, so prompts and
padding are left out); here the global-batch mean over real target tokens,

    locca_loss = Σ_b nll_b / Σ_b tokens_b,

which the objective (bigvl/losses/objective.py) weights by `loss.locca_weight`. Captioning,
referring-expression and grounded-caption examples share it, each token counting once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def locca_loss(outputs: dict) -> jax.Array:
    """outputs {locca_nll [B], locca_tokens [B]} → float32 scalar: mean NLL per target token over the batch."""
    return jnp.sum(outputs["locca_nll"]) / jnp.maximum(jnp.sum(outputs["locca_tokens"]), 1.0)
