"""FLAIR's text-conditioned attention pooling (Xiao et al. 2025) on the two-tower model.

One multi-head attention layer whose query is a text's embedding and whose keys and values are
one image's patch tokens gives an image embedding per (image, text) pair:

    v_ij = norm(W_o · Attn(q = W_q t_j, k = W_k LN(P_i), v = W_v LN(P_i)))     P_i [N, W] patch tokens
    flair_logits[i, j] = logit_scale · <v_ij, t_j> + logit_bias                    [B, B·T]

At batch B with T texts per image that is B·BT pooled vectors; `text_conditioned_logits`
computes them a chunk of texts at a time (`lax.map`, each chunk under `jax.checkpoint`), so
forward and backward hold B · chunk · N attention weights, never B · BT · N, and only the
[B, BT] logits leave. `text_conditioned_pool` is the pooling of one chunk (all T texts at once in tests).

`FlairTwoTower` is `TwoTower` plus this pooler (params under `flair_pool`); its encoders are
TwoTower's (the global embeddings the evaluators use), its `__call__` adds `flair_logits`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.heads import l2_normalize, logit_scale
from bigvl.models.options import ModelOptions
from bigvl.models.transformer import DENSE_INIT, DenseGeneral, flat_init, layer_norm, named
from bigvl.models.two_tower import TwoTower


def text_conditioned_pool(q: jax.Array, k: jax.Array, v: jax.Array, out_kernel: jax.Array) -> jax.Array:
    """Every (image, text) pair at once: q [T,H,h], k, v [B,N,H,h], out_kernel [H,h,E] → L2-normalised
    pooled float32 [B,T,E]."""
    scores = jnp.einsum("chd,bnhd->bchn", q, k) * (q.shape[-1] ** -0.5)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    return l2_normalize(jnp.einsum("bchd,hde->bce", jnp.einsum("bchn,bnhd->bchd", weights, v), out_kernel))


def text_conditioned_logits(q: jax.Array, k: jax.Array, v: jax.Array, out_kernel: jax.Array, text: jax.Array,
                            scale: jax.Array, bias: jax.Array, chunk: int) -> jax.Array:
    """scale · <pool(q_j; image i), text_j> + bias, a chunk of texts at a time → float32 [B, T].

    q [T,H,h] (text queries), k, v [B,N,H,h] (patch keys/values), out_kernel [H,h,E], text [T,E]
    unit rows, scale/bias scalars; chunk = the largest divisor of T that is <= `chunk`.
    """
    count = text.shape[0]
    size = next(c for c in range(min(max(chunk, 1), count), 0, -1) if count % c == 0)

    def block(args):
        q_chunk, text_chunk = args
        return jnp.einsum("bce,ce->bc", text_conditioned_pool(q_chunk, k, v, out_kernel), text_chunk.astype(jnp.float32))

    out = jax.lax.map(jax.checkpoint(block), (q.reshape(count // size, size, *q.shape[1:]),
                                               text.reshape(count // size, size, text.shape[-1])))
    logits = jnp.moveaxis(out, 0, 1).reshape(k.shape[0], count)
    return jnp.asarray(scale, jnp.float32) * logits + jnp.asarray(bias, jnp.float32)


class TextConditionedPooler(nn.Module):
    """Params: ln (LayerNorm of the patch tokens), q [E,H,h], kv [W,2,H,h], out [H,h,E].
    (patch tokens [B,N,W], text_embeds [T,E], scale, bias) → flair_logits float32 [B,T]."""
    embed_dim: int
    num_heads: int
    chunk: int = 256
    ln_eps: float = 1e-6
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, patches: jax.Array, text: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
        heads, head_dim, opts = self.num_heads, self.embed_dim // self.num_heads, self.options
        q = DenseGeneral((heads, head_dim), ("proj", "heads", "kv"), name="q", options=opts)(text.astype(opts.dtype))
        kv = DenseGeneral((2, heads, head_dim), ("embed", None, "heads", "kv"), name="kv", options=opts)(
            layer_norm(opts, "ln", self.ln_eps)(patches))
        out = self.param("out", named(flat_init(DENSE_INIT, 2), "heads", "kv", "proj"),
                         (heads, head_dim, self.embed_dim), opts.param_dtype).astype(opts.dtype)
        return text_conditioned_logits(q, kv[:, :, 0], kv[:, :, 1], out, text, scale, bias, self.chunk)


class FlairTwoTower(TwoTower):
    """TwoTower + FLAIR's pooler: images [B,S,S,3], tokens [B·T,L] → TwoTower's dict + flair_logits
    float32 [B, B·T] (text column j·T + t is text t of image j). Needs `bias_init` (sigmoid loss)."""
    pool_heads: int = 4
    pool_chunk: int = 256

    def setup(self):
        super().setup()
        if self.embed_dim % self.pool_heads:
            raise ValueError(f"model.flair_pool_heads {self.pool_heads} does not divide embed_dim {self.embed_dim}")
        self.flair_pool = TextConditionedPooler(self.embed_dim, self.pool_heads, self.pool_chunk,
                                                self.image.ln_eps, self.options)

    def __call__(self, images: jax.Array, tokens: jax.Array, with_patch_embeds: bool = False) -> dict:
        pooled, patches = self.image(images)
        image_embeds = l2_normalize(self.image_proj(pooled) if self.image_proj is not None else pooled)
        text_embeds = self.encode_text(tokens)
        scale = logit_scale(self.log_logit_scale)
        out = {"image_embeds": image_embeds, "text_embeds": text_embeds, "logit_scale": scale,
               "logit_bias": self.logit_bias,
               "flair_logits": self.flair_pool(patches, text_embeds, scale, self.logit_bias)}
        if with_patch_embeds:
            out["patch_embeds"] = l2_normalize(self.image_proj(patches) if self.image_proj is not None else patches)
        return out
