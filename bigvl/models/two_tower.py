"""The two-tower CLIP / SigLIP model: towers → (optional) linear projections → L2-normalised embeddings.

Params: {image: VisionTower, text: TextTower, image_proj, text_proj (when enabled),
log_logit_scale (scalar, = log temperature_init), logit_bias (scalar, SigLIP only)}.
"""
from __future__ import annotations

import flax.linen as nn
import jax

from bigvl.models.heads import l2_normalize, logit_bias_param, logit_scale, logit_scale_param, projection
from bigvl.models.options import ModelOptions
from bigvl.models.text import TextTower
from bigvl.models.vit import VisionTower

__all__ = ["TwoTower"]


class TwoTower(nn.Module):
    """images [B,S,S,3], tokens int [B,L] → dict(image_embeds [B,E] f32, text_embeds [B,E] f32,
    logit_scale f32 scalar, logit_bias f32 scalar when `bias_init` is set).

    `logit_scale` = exp(log_logit_scale); the optimizer keeps the param ≤ log model.max_logit_scale
    (CLIP's 100), clamping it after each update as open_clip does.
    A tower with `project_*=False` outputs its pooled features directly (its width must equal
    `embed_dim`), as big_vision's SigLIP image tower.
    """
    image: VisionTower
    text: TextTower
    embed_dim: int
    project_image: bool = True
    project_text: bool = True
    image_proj_bias: bool = False
    text_proj_bias: bool = False
    temperature_init: float = 1 / 0.07
    bias_init: float | None = None
    # options.pooled_last_block: in encode_image / encode_text each tower's last block computes only
    # its pooled position (cls / eos / last / first pooling); exact, ~1/depth less work (`transformer.Encoder`'s keep).
    options: ModelOptions = ModelOptions()

    def setup(self):
        self.image_proj = (projection(self.embed_dim, self.options, use_bias=self.image_proj_bias, name="image_proj")
                           if self.project_image else None)
        self.text_proj = (projection(self.embed_dim, self.options, use_bias=self.text_proj_bias, name="text_proj")
                          if self.project_text else None)
        self.log_logit_scale = logit_scale_param(self, self.temperature_init)
        if self.bias_init is not None:
            self.logit_bias = logit_bias_param(self, self.bias_init)

    def encode_image(self, images: jax.Array) -> jax.Array:
        """images [B,S,S,3] uint8 (or float in [-1,1]) → L2-normalised float32 [B,E]."""
        pooled, _ = self.image(images, pooled_only=self.options.pooled_last_block)
        return l2_normalize(self.image_proj(pooled) if self.image_proj is not None else pooled)

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        """tokens int32 [B,L] (right-padded) → L2-normalised float32 [B,E]."""
        pooled, _ = self.text(tokens, pooled_only=self.options.pooled_last_block)
        return l2_normalize(self.text_proj(pooled) if self.text_proj is not None else pooled)

    def encode_image_with_patches(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images [B,S,S,3] → (L2-normalised [B,E], patch embeddings [B,N,E]).

        Patch embeddings: the tower's final-LayerNorm patch tokens through the same image
        projection as the pooled output, L2-normalised (the local features of DreamLIP's
        grouping loss).
        """
        pooled, tokens = self.image(images)
        if self.image_proj is not None:
            pooled, tokens = self.image_proj(pooled), self.image_proj(tokens)
        return l2_normalize(pooled), l2_normalize(tokens)

    def encode_patches(self, images: jax.Array) -> jax.Array:
        """images [B,S,S,3] → patch embeddings float32 [B,N,E] (row-major patch grid)."""
        return self.encode_image_with_patches(images)[1]

    def __call__(self, images: jax.Array, tokens: jax.Array, with_patch_embeds: bool = False
                 ) -> dict[str, jax.Array]:
        """See the class docstring; `with_patch_embeds` adds patch_embeds [B,N,E] f32."""
        if with_patch_embeds:
            image_embeds, patch_embeds = self.encode_image_with_patches(images)
        else:
            image_embeds, patch_embeds = self.encode_image(images), None
        out = {"image_embeds": image_embeds, "text_embeds": self.encode_text(tokens),
               "logit_scale": logit_scale(self.log_logit_scale)}
        if patch_embeds is not None:
            out["patch_embeds"] = patch_embeds
        if self.bias_init is not None:
            out["logit_bias"] = self.logit_bias
        return out
