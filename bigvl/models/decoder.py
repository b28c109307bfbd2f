"""The causal text decoder of the captioners (CoCa, CLIPS), with an explicit KV cache.

`CaptionDecoder`: token + learned position embeddings (or RoPE) → `uni_depth` causal self-attention
layers (CoCa's unimodal text tower; 0 for CLIPS) → LayerNorm → `depth` multimodal layers
(causal self-attention, cross-attention to a memory of image/text tokens, MLP) →
LayerNorm → vocabulary logits. With `cls_token`, a learned CLS embedding is placed right
after each sequence's last real token (position = length, a slot the causal mask hides
from every real token) and its unimodal output is CoCa's contrastive text feature.

Two ways to run it, giving the same logits:
- full (training, and decoding without a cache): `__call__(tokens [B,T], memory, lengths)`
  → logits [B,T,V];
- incremental: `init_cache(memory, max_length)` once (it also projects the
  memory to every layer's cross-attention keys/values), then `step(token [B], position,
  cache)` → (logits [B,V], cache) per generated token. The cache is a plain pytree of
  arrays with batch first, so beam search reorders it with one gather.

Also here, the two ends of a caption's training pass: `shift_right` (labels → decoder input)
and `token_nll` (logits + labels → the per-caption summed NLL and token count the captioners
output; `bigvl.losses.captioning.caption_loss` averages them over the global batch).

Logical axis names as in `transformer.py` (`embed`, `heads`, `kv`, `mlp`, `vocab`, `pos`;
activations `batch`, `seq`, `act_embed`, `act_heads`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bigvl.models.options import ModelOptions
from bigvl.models.rope import Rope, rotate, rotate_qk
from bigvl.models.transformer import DENSE_INIT, ZEROS, DenseGeneral, Mlp, attention, layer_norm, named, remat_policy

Cache = dict[str, Any]


def shift_right(tokens: jax.Array, bos_id: int) -> jax.Array:
    """tokens int [B,L] → decoder input [B,L]: BOS then tokens[:, :-1]."""
    return jnp.concatenate([jnp.full((tokens.shape[0], 1), bos_id, tokens.dtype), tokens[:, :-1]], axis=1)


def token_nll(logits: jax.Array, labels: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """logits [B,L,V], labels int [B,L] → (summed NLL float32 [B], real-token count float32 [B]).

    Positions whose label is `pad_id` count for nothing.
    """
    mask = (labels != pad_id).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.sum(nll * mask, axis=1), jax.lax.stop_gradient(jnp.sum(mask, axis=1))


class CausalLayer(nn.Module):
    """Pre-LN decoder layer: x + self_attn(LN x) [+ cross_attn(LN x, memory)] + mlp(LN x).

    Full mode: x [B,T,D] (causal over T). Step mode (`step`): x [B,1,D] at `position`,
    attending to the cached keys/values of positions ≤ position.
    """
    width: int
    num_heads: int
    mlp_dim: int
    cross: bool = False
    options: ModelOptions = ModelOptions()
    rope: Rope | None = None  # rotary positions on the self-attention's q and k (bigvl/models/rope.py)

    def setup(self):
        dense = dict(options=self.options)
        heads, head_dim = self.num_heads, self.width // self.num_heads
        self.ln_1 = layer_norm(self.options)
        self.qkv = DenseGeneral((3, heads, head_dim), ("embed", None, "heads", "kv"), **dense)
        self.out = DenseGeneral((self.width,), ("heads", "kv", "embed"), in_dims=2, **dense)
        if self.cross:
            self.ln_cross = layer_norm(self.options)
            self.cross_q = DenseGeneral((heads, head_dim), ("embed", "heads", "kv"), **dense)
            self.cross_kv = DenseGeneral((2, heads, head_dim), ("embed", None, "heads", "kv"), **dense)
            self.cross_out = DenseGeneral((self.width,), ("heads", "kv", "embed"), in_dims=2, **dense)
        self.ln_2 = layer_norm(self.options)
        self.mlp = Mlp(self.mlp_dim, **dense)

    def memory_kv(self, memory: jax.Array) -> jax.Array:
        """memory [B,M,Dm] → this layer's cross-attention keys/values [B,M,2,H,K]."""
        return nn.with_logical_constraint(self.cross_kv(memory), ("batch", "seq", None, "act_heads", None))

    def _cross(self, x: jax.Array, kv: jax.Array, memory_lengths: jax.Array | None) -> jax.Array:
        q = self.cross_q(self.ln_cross(x))
        y = attention(q, kv[:, :, 0], kv[:, :, 1], kv_lengths=memory_lengths,
                      implementation=self.options.attention_impl)
        return self.cross_out(y)

    def __call__(self, x: jax.Array, memory: jax.Array | None = None,
                 memory_lengths: jax.Array | None = None) -> jax.Array:
        """Full mode: x [B,T,D], memory [B,M,Dm] (cross layers), memory_lengths int32 [B] → [B,T,D]."""
        qkv = nn.with_logical_constraint(self.qkv(self.ln_1(x)), ("batch", "seq", None, "act_heads", None))
        q, k = rotate_qk(qkv[:, :, 0], qkv[:, :, 1], self.rope)
        y = attention(q, k, qkv[:, :, 2], is_causal=True,
                      implementation=self.options.attention_impl)
        x = x + self.out(y)
        if self.cross:
            x = x + self._cross(x, self.memory_kv(memory), memory_lengths)
        x = nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))
        x = x + self.mlp(self.ln_2(x))
        return nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))

    def step(self, x: jax.Array, position: jax.Array, cache: Cache,
             memory_lengths: jax.Array | None = None) -> tuple[jax.Array, Cache]:
        """Step mode: x [B,1,D] at int `position`; cache {k, v [B,Lmax,H,K], (memory_kv [B,M,2,H,K])}."""
        qkv = self.qkv(self.ln_1(x))
        if self.rope is not None:  # this step's q and k at `position`; cached keys were rotated at theirs
            where = jnp.reshape(position, (1,))
            qkv = jnp.stack([rotate(qkv[:, :, 0], where, self.rope), rotate(qkv[:, :, 1], where, self.rope),
                             qkv[:, :, 2]], axis=2)
        k = jax.lax.dynamic_update_slice_in_dim(cache["k"], qkv[:, :, 1].astype(cache["k"].dtype), position, axis=1)
        v = jax.lax.dynamic_update_slice_in_dim(cache["v"], qkv[:, :, 2].astype(cache["v"].dtype), position, axis=1)
        lengths = jnp.full((x.shape[0],), position + 1, jnp.int32)
        y = attention(qkv[:, :, 0], k.astype(qkv.dtype), v.astype(qkv.dtype), kv_lengths=lengths,
                      implementation=self.options.attention_impl)
        x = x + self.out(y)
        if self.cross:
            x = x + self._cross(x, cache["memory_kv"], memory_lengths)
        x = x + self.mlp(self.ln_2(x))
        return x, {**cache, "k": k, "v": v}


class CaptionDecoder(nn.Module):
    """tokens int [B,T] (BOS-first decoder input) + memory [B,M,Dm] → logits float32 [B,T,V].

    See the module docstring. `context_length` bounds T (and the decode length).
    """
    vocab_size: int
    context_length: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    uni_depth: int = 0
    cls_token: bool = False
    # Its layers stay unrolled whatever options.scan_layers (that is the towers' encoder blocks).
    options: ModelOptions = ModelOptions()
    rope: Rope | None = None  # model.text.pos_emb 'rope': rotary self-attention, no pos_embedding table

    def setup(self):
        opts = self.options
        use_remat, policy = remat_policy(opts.remat)
        layer_cls = nn.remat(CausalLayer, policy=policy, prevent_cse=True) if use_remat else CausalLayer
        common = dict(options=opts, rope=self.rope)
        self.uni_layers = [layer_cls(self.width, self.num_heads, self.mlp_dim, False, name=f"uni_{i}", **common)
                           for i in range(self.uni_depth)]
        self.layers = [layer_cls(self.width, self.num_heads, self.mlp_dim, True, name=f"block_{i}", **common)
                       for i in range(self.depth)]
        self.token_embedding = self.param("token_embedding", named(nn.initializers.normal(0.02), "vocab", "embed"),
                                          (self.vocab_size, self.width), opts.param_dtype)
        positions = self.context_length + int(self.cls_token)
        self.pos_embedding = None if self.rope is not None else self.param(
            "pos_embedding", named(nn.initializers.normal(0.01), "pos", "embed"), (positions, self.width),
            opts.param_dtype)
        if self.cls_token:
            self.cls = self.param("cls_token", named(nn.initializers.normal(self.width ** -0.5), "embed"),
                                  (self.width,), opts.param_dtype)
            self.ln_uni = layer_norm(opts)
        self.ln_final = layer_norm(opts)
        self.head = nn.Dense(self.vocab_size, dtype=opts.dtype, param_dtype=opts.param_dtype,
                             kernel_init=named(DENSE_INIT, "embed", "vocab"), bias_init=named(ZEROS, "vocab"))

    def _embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        table = nn.with_logical_constraint(self.token_embedding.astype(self.options.dtype), ("vocab", None))
        x = jnp.take(table, tokens, axis=0)
        return x if self.pos_embedding is None else x + self.pos_embedding.astype(self.options.dtype)[positions]

    def _logits(self, x: jax.Array) -> jax.Array:
        logits = self.head(self.ln_final(x)).astype(jnp.float32)
        return nn.with_logical_constraint(logits, ("batch", "seq", None))

    def unimodal(self, tokens: jax.Array, lengths: jax.Array | None = None) -> tuple[jax.Array | None, jax.Array]:
        """Full mode through the unimodal layers: tokens [B,T] → (cls [B,D] or None, x [B,T,D]).

        With `cls_token`, lengths int32 [B] (real tokens per row, ≤ T) place the CLS slot.
        """
        batch, length = tokens.shape
        if length > self.context_length:
            raise ValueError(f"{length} tokens exceed the decoder context_length {self.context_length}")
        x = self._embed(tokens, jnp.arange(length))
        if self.cls_token:  # one more slot, then the CLS embedding at position `length` of each row
            x = jnp.concatenate([x, jnp.zeros((batch, 1, self.width), x.dtype)], axis=1)
            slots = jnp.arange(length + 1)[None, :, None] == lengths[:, None, None]
            cls = jnp.broadcast_to(self.cls.astype(self.options.dtype), (batch, self.width))
            if self.pos_embedding is not None:
                cls = cls + self.pos_embedding.astype(self.options.dtype)[lengths]
            x = jnp.where(slots, cls[:, None, :], x)
        x = nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))
        for layer in self.uni_layers:
            x = layer(x)
        if not self.cls_token:
            return None, x
        x = self.ln_uni(x)
        pooled = jnp.take_along_axis(x, lengths[:, None, None], axis=1)[:, 0]
        return nn.with_logical_constraint(pooled, ("batch", "act_embed")), x[:, :length]

    def multimodal(self, x: jax.Array, memory: jax.Array, memory_lengths: jax.Array | None = None) -> jax.Array:
        """Full mode from `unimodal`'s x [B,T,D] through the multimodal layers → logits float32 [B,T,V]."""
        for layer in self.layers:
            x = layer(x, memory, memory_lengths)
        return self._logits(x)

    def __call__(self, tokens: jax.Array, memory: jax.Array, memory_lengths: jax.Array | None = None,
                 lengths: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """Full mode → (logits float32 [B,T,V], cls feature [B,D] or None). lengths: see `unimodal`."""
        pooled, x = self.unimodal(tokens, lengths)
        return self.multimodal(x, memory, memory_lengths), pooled

    def init_cache(self, memory: jax.Array, max_length: int) -> Cache:
        """memory [B,M,Dm] → an empty cache for `max_length` steps (memory keys/values precomputed)."""
        if max_length > self.context_length:
            raise ValueError(f"decode length {max_length} exceeds the decoder context_length {self.context_length}")
        batch, heads = memory.shape[0], self.num_heads
        empty = jnp.zeros((batch, max_length, heads, self.width // heads), self.options.dtype)
        cache = {"uni": [{"k": empty, "v": empty} for _ in self.uni_layers],
                 "layers": [{"k": empty, "v": empty, "memory_kv": layer.memory_kv(memory)}
                            for layer in self.layers]}
        return cache

    def step(self, token: jax.Array, position: jax.Array, cache: Cache,
             memory_lengths: jax.Array | None = None) -> tuple[jax.Array, Cache]:
        """token int [B] at int `position` (0 = the BOS input) → (logits float32 [B,V], new cache)."""
        x = self._embed(token[:, None], jnp.reshape(position, (1,)))
        uni, layers = [], []
        for layer, c in zip(self.uni_layers, cache["uni"]):
            x, c = layer.step(x, position, c)
            uni.append(c)
        if self.cls_token:
            x = self.ln_uni(x)
        for layer, c in zip(self.layers, cache["layers"]):
            x, c = layer.step(x, position, c, memory_lengths)
            layers.append(c)
        return self._logits(x)[:, 0], {"uni": uni, "layers": layers}
