"""Rotary position embeddings (RoPE, Su et al. 2021) for the text tower and the captioners' decoders.

`model.text.pos_emb = "rope"` replaces the learned absolute position table: queries and keys of
every self-attention layer are rotated by an angle proportional to their position, so the score
q_m · k_n depends on the positions only through the offset m − n (TULIP's text tower). No
parameter depends on the context length, so a tower trained at T tokens runs at any length;
`train_length` < the context turns on position interpolation (Chen et al. 2023): positions are
multiplied by train_length / context_length, so a longer context reuses the angles seen in training.

Layout: the half-split ("GPT-NeoX" / HF LLaMA) pairing, feature i with feature i + K/2 of each
head, frequencies base^(−2i/K) for i < K/2.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

POS_EMBS = ("learned", "rope")  # model.text.pos_emb


@dataclasses.dataclass(frozen=True)
class Rope:
    """How positions rotate queries and keys: base (10,000 as in RoFormer / LLaMA) and the
    position scale (1 = none; train_length / context_length for position interpolation)."""
    base: float = 10000.0
    scale: float = 1.0

    def __post_init__(self):
        if not self.base > 1.0:
            raise ValueError(f"config key 'model.text.rope_base' must be > 1, got {self.base}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"RoPE position scale must be in (0, 1], got {self.scale}")


def rope_from_config(text_cfg) -> Rope | None:
    """`config.model.text` → Rope, or None for learned positions. ValueError naming the key.

    rope_train_length 0 (or ≥ context_length): positions as they are; else interpolated by
    rope_train_length / context_length."""
    kind = text_cfg.get("pos_emb", "learned")  # `get`: configs saved before the key existed
    if kind not in POS_EMBS:
        raise ValueError(f"config key 'model.text.pos_emb': {kind!r} is not one of {POS_EMBS}")
    if kind == "learned":
        return None
    train_length, context = int(text_cfg.get("rope_train_length", 0)), int(text_cfg.context_length)
    if train_length < 0:
        raise ValueError(f"config key 'model.text.rope_train_length' must be >= 0, got {train_length}")
    scale = train_length / context if 0 < train_length < context else 1.0
    return Rope(base=float(text_cfg.get("rope_base", 10000.0)), scale=scale)


def rotate(x: jax.Array, positions: jax.Array, rope: Rope) -> jax.Array:
    """x [B,T,H,K] (K even), positions int/float [T] or [B,T] → x rotated, same shape and dtype.

    Feature pair (i, i + K/2) of the vector at position p turns by the angle p · scale · base^(−2i/K);
    the angles are computed in float32.
    """
    head_dim = x.shape[-1]
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head width, got {head_dim}")
    half = head_dim // 2
    inv_freq = rope.base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / head_dim)  # [K/2]
    positions = jnp.asarray(positions, jnp.float32) * rope.scale
    angles = positions[..., None] * inv_freq  # [T, K/2] or [B, T, K/2]
    if angles.ndim == 2:
        angles = angles[None]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]  # [B|1, T, 1, K/2]
    first, second = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return out.astype(x.dtype)


def rotate_qk(q: jax.Array, k: jax.Array, rope: Rope | None, q_positions: jax.Array | int | None = None
              ) -> tuple[jax.Array, jax.Array]:
    """q [B,Tq,H,K], k [B,S,H,K] → both rotated (unchanged when rope is None).

    Keys sit at positions 0..S−1; queries at 0..Tq−1, or at `q_positions` (an int, or int32 [B]
    with Tq = 1: one query per sequence, e.g. the pooled position or a decoding step)."""
    if rope is None:
        return q, k
    if q_positions is None:
        qpos = jnp.arange(q.shape[1])
    else:
        qpos = jnp.broadcast_to(jnp.asarray(q_positions, jnp.int32), q.shape[:1])[:, None]  # [B, 1]
    return rotate(q, qpos, rope), rotate(k, jnp.arange(k.shape[1]), rope)
