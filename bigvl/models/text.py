"""The text tower: token + learned position embeddings (or RoPE) → encoder (causal or bidirectional) → pool.

Token sequences are right-padded with `pad_id`: text ids, then `eos_id`, then pads. The
length of a sequence is the index of its last non-pad token + 1 (at least 1).
- causal (CLIP): causal self-attention; pads need no mask since nothing before them sees them.
- bidirectional (SigLIP): keys at positions >= length are masked, so appending pads never
  changes any output at a real position.
Pooling: 'eos' = the first position holding `eos_id` (the last real token if there is none,
e.g. a truncated sequence), 'last' = the last real token, 'first' = position 0, 'final' =
position T−1 whatever it holds, 'map' = attention pooling over the real tokens.
When pad_id == eos_id (SigLIP's T5 vocabulary: both 1), the first of the trailing pads is the EOS,
and it counts as a real token.
The projection to the joint embedding lives in `two_tower.TwoTower`, not here.

For imported weights: big_vision's and HF's SigLIP text towers see the fixed-length sequence
whole (pads unmasked) and take its last position; `mask_pads=False` does the same (every
position counts as real, so 'last' is position T−1 and nothing is masked). transformers'
SiglipTextModel given an attention mask masks the pad keys and still takes position T−1:
`mask_pads=True, pool='final'`. LayerNorm eps and
the MLP activation are options as in bigvl/models/vit.py (open_clip: 1e-5, QuickGELU / exact GELU).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.options import ModelOptions
from bigvl.models.rope import Rope
from bigvl.models.transformer import Encoder, MAPHead, named

POOLS = ("eos", "last", "first", "map", "final")


def sequence_lengths(tokens: jax.Array, pad_id: int, eos_id: int | None = None) -> jax.Array:
    """tokens int [B,T] → int32 [B]: index of the last non-pad token + 1, at least 1; plus one (at most
    T) when eos_id == pad_id, for the EOS that is the first trailing pad."""
    positions = jnp.arange(1, tokens.shape[1] + 1, dtype=jnp.int32)
    lengths = jnp.max(jnp.where(tokens != pad_id, positions, 0), axis=1)
    if eos_id is not None and eos_id == pad_id:
        lengths = jnp.minimum(lengths + 1, tokens.shape[1])
    return jnp.maximum(lengths, 1)


def pool_positions(tokens: jax.Array, pool: str, eos_id: int, pad_id: int) -> jax.Array:
    """tokens int [B,T] → int32 [B]: the position whose output is the sequence embedding."""
    lengths = sequence_lengths(tokens, pad_id, eos_id)
    if pool == "final":
        return jnp.full(tokens.shape[:1], tokens.shape[1] - 1, jnp.int32)
    if pool == "eos":
        is_eos = tokens == eos_id
        return jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1).astype(jnp.int32), lengths - 1)
    if pool == "last":
        return lengths - 1
    return jnp.zeros(tokens.shape[:1], jnp.int32)


class TextTower(nn.Module):
    """tokens int [B,T] (T <= context_length) → (pooled [B,D], tokens [B,T,D]) in `options.dtype`."""
    vocab_size: int
    context_length: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    eos_id: int  # special ids: no defaults, they come from config.model.text (build_model)
    pad_id: int
    causal: bool = True
    pool: str = "eos"
    activation: str = "gelu_tanh"  # transformer.ACTIVATIONS
    ln_eps: float = 1e-6
    mask_pads: bool = True  # False: pads are ordinary tokens (SigLIP as published: no mask, last = T−1)
    options: ModelOptions = ModelOptions()  # dtypes, remat, attention, weight grads, scanned blocks
    rope: Rope | None = None  # model.text.pos_emb 'rope': rotary positions, no pos_embedding table (rope.py)

    @nn.compact
    def __call__(self, tokens: jax.Array, pooled_only: bool = False) -> tuple[jax.Array, jax.Array | None]:
        """pooled_only: the caller wants the pooled output alone; unless pooled by a MAP head,
        the last block then computes the pooled position only (`Encoder`'s keep), tokens None."""
        if self.pool not in POOLS:
            raise ValueError(f"model.text.pool {self.pool!r} is not one of {POOLS}")
        length, opts = tokens.shape[1], self.options
        if length > self.context_length:
            raise ValueError(f"{length} tokens exceed model.text.context_length {self.context_length}")
        tokens = nn.with_logical_constraint(tokens, ("batch", "seq"))
        table = self.param("token_embedding", named(nn.initializers.normal(0.02), "vocab", "embed"),
                           (self.vocab_size, self.width), opts.param_dtype)
        # Gather from a table whole along `embed` (still split by `vocab`): gathering from an
        # fsdp-split table makes GSPMD replicate the output before it can split it by batch.
        table = nn.with_logical_constraint(table.astype(opts.dtype), ("vocab", None))
        x = jnp.take(table, tokens, axis=0)
        if self.rope is None:
            pos = self.param("pos_embedding", named(nn.initializers.normal(0.01), "pos", "embed"),
                             (self.context_length, self.width), opts.param_dtype)
            x = x + pos[:length].astype(opts.dtype)
        x = nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))
        # mask_pads=False: a pad id no token can hold makes every position real (length T, no mask).
        pad_id = self.pad_id if self.mask_pads else -1
        kv_lengths = None if self.causal or not self.mask_pads else sequence_lengths(tokens, pad_id, self.eos_id)
        where = None if self.pool == "map" else pool_positions(tokens, self.pool, self.eos_id, pad_id)
        keep = where if pooled_only else None
        x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.causal, self.activation, self.ln_eps, opts,
                    self.rope, name="encoder")(x, kv_lengths, keep)
        if keep is not None:
            return nn.with_logical_constraint(x[:, 0], ("batch", "act_embed")), None
        if self.pool == "map":
            pooled = MAPHead(self.num_heads, self.mlp_dim, 1, self.activation, self.ln_eps, opts, name="map_head")(
                x, sequence_lengths(tokens, pad_id, self.eos_id) if self.mask_pads else None)[:, 0]
        else:
            pooled = jnp.take_along_axis(x, where[:, None, None], axis=1)[:, 0]
        return nn.with_logical_constraint(pooled, ("batch", "act_embed")), x
