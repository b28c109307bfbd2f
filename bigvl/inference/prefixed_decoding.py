"""Decoding that starts from given tokens: the first len(prefix) generated positions are forced.

Used for FlexCap-style length control (bigvl/data/length_prefix.py: the prompt "N words:"): the
step's logits at position i < len(prefix) become 0 at prefix[i] and -inf elsewhere, so greedy,
sampling and beam search (and guidance, whose step this wraps) all emit the prefix and then
continue from it with the model's own distribution. Output rows keep the prefix tokens.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax.numpy as jnp


def forced_prefix_stepper(step: Callable, prefix: Sequence[int]) -> Callable:
    """step(state, token [N], i) → (logits [N,V], state)  ⇒  the same with positions i < len(prefix) forced."""
    ids = jnp.asarray(prefix, jnp.int32)

    def forced(state, token, i):
        logits, state = step(state, token, i)
        wanted = ids[jnp.minimum(i, ids.shape[0] - 1)]
        onehot = jnp.where(jnp.arange(logits.shape[-1]) == wanted, 0.0, -jnp.inf).astype(logits.dtype)
        return jnp.where(i < ids.shape[0], onehot[None, :], logits), state

    return forced
