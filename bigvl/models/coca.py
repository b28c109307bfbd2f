"""CoCa (Yu et al. 2022): contrastive + captioning with one text decoder.

    images ─ ViT ─ tokens ─┬─ AttentionalPooler(1 query)  ─ image_proj ─ image_embeds (contrastive)
                           └─ AttentionalPooler(N = 256)  ─ memory of the multimodal layers
    [BOS, caption] ─ unimodal causal layers (+ CLS after the last token) ─┬─ CLS ─ text_proj ─ text_embeds
                                                                          └─ multimodal layers ─ logits

The unimodal layers are the text tower: the contrastive text embedding is the output of a
learned CLS token appended after each caption (`decoder.CaptionDecoder`, `cls_token`).
Loss (see `bigvl.losses.captioning`): contrastive_weight · InfoNCE + caption_weight ·
cross-entropy of the next tokens (defaults 1 and 2, CoCa's weights), padding masked.

Tokens arrive as the tokenizer writes them (ids, EOS, pads; no BOS); the decoder input is
[BOS, tokens[:-1]] and the labels are the tokens themselves. Without `target_tokens` the
model captions its (first) contrastive text, as open_clip's CoCa; with them, the
contrastive text and the caption target may differ (e.g. alt-text vs synthetic caption).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.decoder import CaptionDecoder, shift_right, token_nll
from bigvl.models.guidance import drop_memory
from bigvl.models.heads import l2_normalize, logit_scale, logit_scale_param, projection
from bigvl.models.options import ModelOptions
from bigvl.models.text import sequence_lengths
from bigvl.models.transformer import DenseGeneral, attention, layer_norm, named
from bigvl.models.vit import VisionTower


class AttentionalPooler(nn.Module):
    """CoCa's attentional pooler: Q learned queries attend to LN(x) in one multi-head attention.

    x [B,N,Dx] → [B,Q,width] (LayerNorm'd). open_clip's AttentionalPooler plus its ln_post.
    Not `transformer.MAPHead` with options: the two differ in every part but the attention
    (LayerNorm on queries and keys, a LayerNorm after, no MLP; `query` vs `probe` with another
    init), and both param trees are frozen by stored checkpoints (tests/test_param_trees.py).
    """
    width: int
    num_heads: int
    num_queries: int = 1
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        heads, head_dim, opts = self.num_heads, self.width // self.num_heads, self.options
        query = self.param("query", named(nn.initializers.normal(self.width ** -0.5), None, "embed"),
                           (self.num_queries, self.width), opts.param_dtype)
        q = DenseGeneral((heads, head_dim), ("embed", "heads", "kv"), name="q", options=opts)(
            layer_norm(opts, "ln_q")(query.astype(opts.dtype)))
        q = jnp.broadcast_to(q[None], (x.shape[0],) + q.shape)
        kv = DenseGeneral((2, heads, head_dim), ("embed", None, "heads", "kv"), name="kv", options=opts)(
            layer_norm(opts, "ln_k")(x))
        kv = nn.with_logical_constraint(kv, ("batch", "seq", None, "act_heads", None))
        y = attention(q, kv[:, :, 0], kv[:, :, 1], implementation=opts.attention_impl)
        y = DenseGeneral((self.width,), ("heads", "kv", "embed"), in_dims=2, name="out", options=opts)(y)
        y = layer_norm(opts, "ln_post")(y)
        return nn.with_logical_constraint(y, ("batch", None, "act_embed"))


class CoCa(nn.Module):
    """images [B,S,S,3], tokens int [B·T,L] (, target_tokens int [B,Ld]) → dict(image_embeds [B,E],
    text_embeds [B·T,E], logit_scale, caption_nll [B], caption_tokens [B]) (bigvl.losses.captioning).

    `decoder` must have `cls_token=True`; its unimodal layers are the text tower.
    """
    image: VisionTower
    decoder: CaptionDecoder
    embed_dim: int
    bos_id: int  # special ids: no defaults, they come from config.model.text (build_captioner)
    eos_id: int  # where decoding stops (bigvl.inference.decoding)
    pad_id: int
    num_queries: int = 256
    pooler_heads: int = 8
    temperature_init: float = 1 / 0.07
    # Classifier-free guidance: the fraction of captions trained with the image dropped (memory zeroed;
    # bigvl/models/guidance.py); 0 = never.
    image_drop: float = 0.0
    options: ModelOptions = ModelOptions()

    def setup(self):
        width, opts = self.image.width, self.options
        self.contrastive_pooler = AttentionalPooler(width, self.pooler_heads, 1, opts)
        self.caption_pooler = AttentionalPooler(width, self.pooler_heads, self.num_queries, opts)
        self.image_proj = projection(self.embed_dim, opts, name="image_proj")
        self.text_proj = projection(self.embed_dim, opts, name="text_proj")
        self.log_logit_scale = logit_scale_param(self, self.temperature_init)

    def _image_embeds(self, tokens: jax.Array) -> jax.Array:
        return l2_normalize(self.image_proj(self.contrastive_pooler(tokens)[:, 0]))

    def _decoder_input(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        lengths = jnp.minimum(sequence_lengths(tokens, self.pad_id) + 1, tokens.shape[1])
        return shift_right(tokens, self.bos_id), lengths

    def encode_image(self, images: jax.Array) -> jax.Array:
        """images [B,S,S,3] uint8 (or float in [-1,1]) → L2-normalised float32 [B,E]."""
        return self._image_embeds(self.image(images)[1])

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        """tokens int32 [B,L] (right-padded, EOS-terminated) → L2-normalised float32 [B,E] (CLS output)."""
        pooled, _ = self.decoder.unimodal(*self._decoder_input(tokens))
        return l2_normalize(self.text_proj(pooled))

    def caption_memory(self, images: jax.Array, cond_tokens: jax.Array | None = None):
        """images [B,S,S,3] → (memory [B,N,D] from the N-query pooler, memory_lengths None)."""
        return self.caption_pooler(self.image(images)[1]), None

    def __call__(self, images: jax.Array, tokens: jax.Array, target_tokens: jax.Array | None = None) -> dict:
        return self.forward(images, tokens, target_tokens)[0]

    def forward(self, images: jax.Array, tokens: jax.Array, target_tokens: jax.Array | None = None):
        """(__call__'s dict, ViT tokens [B,N,W], the captioned text's unimodal stream [B,L,D]): what
        heads on top of CoCa read (SyCoCa's text-guided MIM, bigvl/models/sycoca.py)."""
        batch = images.shape[0]
        vit_tokens = self.image(images)[1]
        memory = drop_memory(self.caption_pooler(vit_tokens), images, self.image_drop)
        # One unimodal pass over all B·T texts gives the CLS features and, without a separate
        # target, the first text's unimodal stream that the multimodal layers caption.
        pooled, text_stream = self.decoder.unimodal(*self._decoder_input(tokens))
        if target_tokens is None:
            num_texts = tokens.shape[0] // batch
            target_tokens = tokens.reshape(batch, num_texts, -1)[:, 0]
            text_stream = text_stream.reshape(batch, num_texts, *text_stream.shape[1:])[:, 0]
            text_stream = nn.with_logical_constraint(text_stream, ("batch", "seq", "act_embed"))
        else:
            _, text_stream = self.decoder.unimodal(*self._decoder_input(target_tokens))
        nll, count = token_nll(self.decoder.multimodal(text_stream, memory), target_tokens, self.pad_id)
        return {"image_embeds": self._image_embeds(vit_tokens), "text_embeds": l2_normalize(self.text_proj(pooled)),
                "logit_scale": logit_scale(self.log_logit_scale),
                "caption_nll": nll, "caption_tokens": count}, vit_tokens, text_stream

    def decode_step(self, token, position, cache, memory_lengths=None):
        """One incremental decoder step: see `CaptionDecoder.step`."""
        return self.decoder.step(token, position, cache, memory_lengths)

    def init_cache(self, memory, max_length: int):
        """An empty KV cache for `max_length` steps: see `CaptionDecoder.init_cache`."""
        return self.decoder.init_cache(memory, max_length)

    def caption_logits(self, tokens, memory, memory_lengths=None):
        """Full recompute: decoder input tokens [B,T] (BOS first) → logits float32 [B,T,V]."""
        lengths = jnp.full((tokens.shape[0],), tokens.shape[1], jnp.int32)
        return self.decoder(tokens, memory, memory_lengths, lengths)[0]
