"""The CLIPS model (Liu et al. 2024): a CLIP plus a captioner conditioned on the alt-text.

    images ─ ViT ─┬─ pooled ─ image_proj ─ image_embeds
                  └─ tokens ─ Dense+LN ─┐
    texts [partial, alt] ─ text tower ─┬─ EOS ─ text_proj ─ text_embeds [B·T,E]
                                       └─ alt tokens ─ Dense+LN ─┴─ memory = [image ; alt] ─┐
    [BOS, full synthetic caption] ─ causal decoder (self-attn + cross-attn to memory) ─ logits

Contrastive side: the text tower sees the partial synthetic caption (strategy `partial`)
and the alt-text as a second positive (T = 2 texts per image, `loss.multi_text`).
Generative side: a *cross-attention* decoder (our design choice; CLIPS's paper uses a
self-attention decoder over [image tokens, alt-text tokens, learnable queries] with a
custom mask) predicts the full synthetic caption (`target_tokens`, e.g. `data.target_field
= "long"`) from the image tokens and the encoded alt-text (text slot `cond_slot`), with
the alt-text's padding masked out of the cross-attention. The cross-attention form gives
ordinary KV-cached greedy / beam decoding. Without `target_tokens` (init, shape
inference) it captions the first text of each image.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.decoder import CaptionDecoder, shift_right, token_nll
from bigvl.models.heads import l2_normalize, logit_scale, logit_scale_param, projection
from bigvl.models.options import ModelOptions
from bigvl.models.text import TextTower, sequence_lengths
from bigvl.models.transformer import layer_norm
from bigvl.models.vit import VisionTower


class CLIPS(nn.Module):
    """images [B,S,S,3], tokens int [B·T,L] (, target_tokens int [B,Ld]) → dict(image_embeds [B,E],
    text_embeds [B·T,E], logit_scale, caption_nll [B], caption_tokens [B]) (bigvl.losses.captioning)."""
    image: VisionTower
    text: TextTower
    decoder: CaptionDecoder
    embed_dim: int
    bos_id: int  # special ids: no defaults, they come from config.model.text (build_captioner)
    eos_id: int  # where decoding stops (bigvl.inference.decoding)
    pad_id: int
    cond_slot: int = 1
    temperature_init: float = 1 / 0.07
    options: ModelOptions = ModelOptions()

    def setup(self):
        opts = self.options
        self.image_proj = projection(self.embed_dim, opts, name="image_proj")
        self.text_proj = projection(self.embed_dim, opts, name="text_proj")
        # Adapters of image tokens and alt-text tokens to the decoder's width: the same Dense form, with bias.
        self.image_memory = projection(self.decoder.width, opts, use_bias=True, name="image_memory")
        self.text_memory = projection(self.decoder.width, opts, use_bias=True, name="text_memory")
        self.ln_memory = layer_norm(opts)
        self.log_logit_scale = logit_scale_param(self, self.temperature_init)

    def encode_image(self, images: jax.Array) -> jax.Array:
        """images [B,S,S,3] uint8 (or float in [-1,1]) → L2-normalised float32 [B,E]."""
        return l2_normalize(self.image_proj(self.image(images)[0]))

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        """tokens int32 [B,L] (right-padded) → L2-normalised float32 [B,E]."""
        return l2_normalize(self.text_proj(self.text(tokens)[0]))

    def _memory(self, image_tokens, cond_features, cond_tokens):
        memory = jnp.concatenate([self.image_memory(image_tokens), self.text_memory(cond_features)], axis=1)
        memory = nn.with_logical_constraint(self.ln_memory(memory), ("batch", "seq", "act_embed"))
        lengths = image_tokens.shape[1] + sequence_lengths(cond_tokens, self.pad_id)
        return memory, lengths

    def caption_memory(self, images: jax.Array, cond_tokens: jax.Array):
        """images [B,S,S,3], alt-text tokens [B,L] → (memory [B,N+L,Dd], memory_lengths int32 [B])."""
        return self._memory(self.image(images)[1], self.text(cond_tokens)[1], cond_tokens)

    def __call__(self, images: jax.Array, tokens: jax.Array, target_tokens: jax.Array | None = None) -> dict:
        batch = images.shape[0]
        pooled_image, image_tokens = self.image(images)
        pooled_text, text_tokens = self.text(tokens)
        num_texts, length = tokens.shape[0] // batch, tokens.shape[1]
        slot = min(self.cond_slot, num_texts - 1)
        per_image = tokens.reshape(batch, num_texts, length)
        cond_tokens = per_image[:, slot]
        cond = text_tokens.reshape(batch, num_texts, length, -1)[:, slot]
        memory, memory_lengths = self._memory(image_tokens, cond, cond_tokens)
        if target_tokens is None:
            target_tokens = per_image[:, 0]
        decoder_in = shift_right(target_tokens, self.bos_id)
        logits, _ = self.decoder(decoder_in, memory, memory_lengths)
        nll, count = token_nll(logits, target_tokens, self.pad_id)
        return {"image_embeds": l2_normalize(self.image_proj(pooled_image)),
                "text_embeds": l2_normalize(self.text_proj(pooled_text)),
                "logit_scale": logit_scale(self.log_logit_scale),
                "caption_nll": nll, "caption_tokens": count}

    def decode_step(self, token, position, cache, memory_lengths=None):
        """One incremental decoder step: see `CaptionDecoder.step`."""
        return self.decoder.step(token, position, cache, memory_lengths)

    def init_cache(self, memory, max_length: int):
        """An empty KV cache for `max_length` steps: see `CaptionDecoder.init_cache`."""
        return self.decoder.init_cache(memory, max_length)

    def caption_logits(self, tokens, memory, memory_lengths=None):
        """Full recompute: decoder input tokens [B,T] (BOS first) → logits float32 [B,T,V]."""
        return self.decoder(tokens, memory, memory_lengths)[0]
