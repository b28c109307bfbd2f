"""Classifier-free guidance at decoding time (Kornblith et al. 2023, "Guiding image captioning models
towards more specific captions"), for captioners trained with `model.decoder.image_drop` > 0.

Each caption row is decoded twice in one batch, with its image memory and with the all-zero memory
the model was trained on for dropped images (bigvl/models/guidance.py), and the next token is
chosen from

    guided = log p(· | image, prefix) + w · (log p(· | image, prefix) − log p(· | prefix))

(w = `DecodeConfig.guidance`; 0 = plain decoding). The two copies sit interleaved (row 2r = row r
with its image, 2r + 1 without), so the doubled KV cache reshapes to [N, 2, ...] and the search code
(greedy, sampling, beam with its row gathers) sees N rows as without guidance. The batch through the
decoder doubles, the cross-attention keys/values of the zero memory included.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def with_unconditional(memory: jax.Array, memory_lengths: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """memory [N,M,D] (lengths [N] | None) → [2N,M,D] interleaved: row 2r = memory r, row 2r + 1 = zeros."""
    doubled = jnp.stack([memory, jnp.zeros_like(memory)], axis=1).reshape(2 * memory.shape[0], *memory.shape[1:])
    return doubled, None if memory_lengths is None else jnp.repeat(memory_lengths, 2, axis=0)


def guided_stepper(state, step: Callable, weight: float):
    """(state over 2N rows, step(state, token [2N], i) → (logits [2N,V], state)) → the same over N rows:
    (state as [N, 2, ...] leaves, step(state, token [N], i) → (guided log-probs float32 [N,V], state))."""
    def pairs(x):
        return x.reshape(x.shape[0] // 2, 2, *x.shape[1:])

    def rows(x):
        return x.reshape(x.shape[0] * 2, *x.shape[2:])

    def guided(paired, token, i):
        logits, state2 = step(jax.tree.map(rows, paired), jnp.repeat(token, 2, axis=0), i)
        logp = jax.nn.log_softmax(pairs(logits).astype(jnp.float32), axis=-1)
        cond, uncond = logp[:, 0], logp[:, 1]
        return cond + weight * (cond - uncond), jax.tree.map(pairs, state2)

    return jax.tree.map(pairs, state), guided
