"""SyCoCa (Ma et al. 2024): CoCa plus a text-guided masked image modelling head with attentive masking,
so both directions of image ↔ text are generative (the decoder captions the image; this head
paints the image's masked patches from the rest and the caption).

    scores[b, n] = <norm(image_proj(ViT token n)), text embedding>    (no gradient)
    mask         = the round(ratio · N) patches of lowest score          (what the caption attends to least)
    masked image = those patches painted mid-grey, through the same ViT → tokens [B, N, W]
    head         = tokens + cross-attention(LN tokens → LN caption stream) → LN → Dense(P·P·3)
    mim_error[b] = Σ_masked ‖prediction − target patch‖² / (P·P·3),  mim_patches[b] = masked count

Targets are the patches in the ViT's input range ((x/255 − mean)/std). `bigvl.losses.objective`
averages them over the global batch as `mim_loss` (weight `loss.mim_weight`). The masked image
runs through the image tower a second time, with the masked pixels replaced at the input, so no
masked patch is seen by the encoder (the tower's self-attention would leak it from the first pass).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.coca import CoCa
from bigvl.models.heads import l2_normalize
from bigvl.models.options import ModelOptions
from bigvl.models.transformer import DENSE_INIT, ZEROS, DenseGeneral, attention, layer_norm, named
from bigvl.models.vit import patchify, to_model_range


def attentive_mask(scores: jax.Array, ratio: float) -> jax.Array:
    """scores [B,N] → bool [B,N], True on the round(ratio · N) lowest-scoring patches of each row."""
    count = int(round(ratio * scores.shape[1]))
    ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    return ranks < count


def mask_pixels(images: jax.Array, mask: jax.Array, patch_size: int) -> jax.Array:
    """images [B,S,S,C], mask bool [B,N] over the row-major patch grid → images with masked patches
    set to mid-grey (128 for uint8, 0 for float input in [-1, 1])."""
    b, s, _, _ = images.shape
    grid = s // patch_size
    pixels = jnp.repeat(jnp.repeat(mask.reshape(b, grid, grid), patch_size, axis=1), patch_size, axis=2)
    grey = jnp.asarray(128 if jnp.issubdtype(images.dtype, jnp.integer) else 0, images.dtype)
    return jnp.where(pixels[..., None], grey, images)


def masked_patch_error(predicted: jax.Array, target: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """predicted, target [B,N,P·P·C], mask bool [B,N] → (Σ over masked patches of the mean squared error
    per value, float32 [B]; masked patch count, float32 [B]). The objective's mim_loss is Σ error / Σ count."""
    error = jnp.mean(jnp.square(predicted.astype(jnp.float32) - target.astype(jnp.float32)), axis=-1)
    weights = mask.astype(jnp.float32)
    return jnp.sum(error * weights, axis=1), jnp.sum(weights, axis=1)


class TextGuidedMIMHead(nn.Module):
    """(masked-image ViT tokens [B,N,W], caption stream [B,L,D], caption lengths [B]) → patches [B,N,out]."""
    width: int
    num_heads: int
    out_dim: int
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, tokens: jax.Array, text: jax.Array, text_lengths: jax.Array) -> jax.Array:
        heads, head_dim, opts = self.num_heads, self.width // self.num_heads, self.options
        q = DenseGeneral((heads, head_dim), ("embed", "heads", "kv"), name="q", options=opts)(
            layer_norm(opts, "ln_q")(tokens))
        kv = DenseGeneral((2, heads, head_dim), ("embed", None, "heads", "kv"), name="kv", options=opts)(
            layer_norm(opts, "ln_kv")(text))
        y = attention(q, kv[:, :, 0], kv[:, :, 1], kv_lengths=text_lengths, implementation=opts.attention_impl)
        x = tokens + DenseGeneral((self.width,), ("heads", "kv", "embed"), in_dims=2, name="out", options=opts)(y)
        return nn.Dense(self.out_dim, dtype=opts.dtype, param_dtype=opts.param_dtype,
                        kernel_init=named(DENSE_INIT, "embed", None), bias_init=named(ZEROS, None),
                        name="pixels")(layer_norm(opts, "ln_out")(x))


class SyCoCa(CoCa):
    """CoCa + the text-guided MIM head (params under `mim_head`): CoCa's outputs plus mim_error [B] and
    mim_patches [B] (see the module docstring). Needs an image tower without a CLS token in its
    patch tokens (pool gap or map) or with one (cls: the tower drops it from tokens)."""
    mask_ratio: float = 0.5

    def setup(self):
        super().setup()
        patch = self.image.patch_size
        self.mim_head = TextGuidedMIMHead(self.image.width, self.pooler_heads, patch * patch * 3, self.options)

    def __call__(self, images: jax.Array, tokens: jax.Array, target_tokens: jax.Array | None = None) -> dict:
        outputs, vit_tokens, text_stream = self.forward(images, tokens, target_tokens)
        batch, patch = images.shape[0], self.image.patch_size
        text = outputs["text_embeds"].reshape(batch, -1, outputs["text_embeds"].shape[-1])[:, 0]
        scores = jnp.einsum("bne,be->bn", l2_normalize(self.image_proj(vit_tokens)), text)
        mask = attentive_mask(jax.lax.stop_gradient(scores), self.mask_ratio)
        masked_tokens = self.image(mask_pixels(images, mask, patch))[1]
        caption = target_tokens if target_tokens is not None else tokens.reshape(batch, -1, tokens.shape[-1])[:, 0]
        lengths = self._decoder_input(caption)[1]
        predicted = self.mim_head(masked_tokens, text_stream, lengths)
        target = patchify(to_model_range(images, jnp.float32, self.image.pixel_mean, self.image.pixel_std), patch)
        error, count = masked_patch_error(predicted, target, mask)
        return {**outputs, "mim_error": error, "mim_patches": count}
