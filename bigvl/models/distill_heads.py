"""SigLIP 2's self-distillation heads (SILC / TIPS, DINO's head): image-tower features → logits over K prototypes.

    features [..., W] ─ Dense(hidden) ─ GELU ─ Dense(hidden) ─ GELU ─ Dense(bottleneck) ─ L2-normalise
                      ─ · normalise(prototypes [bottleneck, K], per prototype) → logits [..., K]

DINO (Caron et al. 2021, §3 and its `DINOHead`): 3-layer MLP of hidden 2048, bottleneck 256, a
weight-normalised last layer with its norm fixed to 1, K = 65536. One head serves both terms (the
global embedding and the per-patch features: iBOT's shared head, as the issue asks: "the same
prototype head"). `mask_token` [W] is the learned token that replaces masked patch embeddings
(the ViT's `patch_mask`). Params live beside the model's, at `params["self_distill"]`
(`bigvl.train.state`), and are dropped after pretraining like the LocCa decoder.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.naflex import resize_positions
from bigvl.models.transformer import DENSE_INIT, ZEROS, named


class DistillHeads(nn.Module):
    """features [..., W] → prototype logits float32 [..., K]; `mask_token` param [W] (see the module docstring)."""
    width: int  # W, the image tower's width
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_prototypes: int = 65536

    def setup(self):
        self.mask_token = self.param("mask_token", named(nn.initializers.normal(0.02), "embed"), (self.width,))
        self.hidden_0 = nn.Dense(self.hidden_dim, kernel_init=named(DENSE_INIT, "embed", "mlp"),
                                 bias_init=named(ZEROS, "mlp"))
        self.hidden_1 = nn.Dense(self.hidden_dim, kernel_init=named(DENSE_INIT, "mlp", None),
                                 bias_init=named(ZEROS, "mlp"))
        self.bottleneck = nn.Dense(self.bottleneck_dim, kernel_init=named(DENSE_INIT, "mlp", "proj"),
                                   bias_init=named(ZEROS, "proj"))
        self.prototypes = self.param("prototypes", named(DENSE_INIT, "proj", "vocab"),
                                     (self.bottleneck_dim, self.num_prototypes))

    def __call__(self, features: jax.Array) -> jax.Array:
        x = nn.gelu(self.hidden_0(features.astype(jnp.float32)))
        x = nn.gelu(self.hidden_1(x))
        x = self.bottleneck(x)
        x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
        w = self.prototypes * jax.lax.rsqrt(jnp.maximum(jnp.sum(self.prototypes ** 2, axis=0, keepdims=True), 1e-12))
        return x @ w

    def init_params(self, rng: jax.Array) -> dict:
        """The heads' params (boxed with logical names), initialised from `rng`."""
        return self.init(rng, jnp.zeros((1, self.width), jnp.float32))["params"]


def resize_position_grid(pos: jax.Array, num_patches: int, cls_slots: int = 0) -> jax.Array:
    """pos [cls_slots + G², W] (a square grid, row-major) → [cls_slots + n², W] with n² = num_patches: the grid
    resized bilinearly by NaFlex's `resize_positions` (SigLIP 2's local crops are smaller than the model's images);
    the cls slot kept."""
    side, new_side = int(round((pos.shape[0] - cls_slots) ** 0.5)), int(round(num_patches ** 0.5))
    if side * side != pos.shape[0] - cls_slots or new_side * new_side != num_patches:
        raise ValueError(f"position grid of {pos.shape[0] - cls_slots} cannot be resized to {num_patches} patches "
                         "(both must be squares)")
    grid = resize_positions(pos[cls_slots:].reshape(side, side, pos.shape[-1]), jnp.asarray([[new_side, new_side]]),
                            num_patches)[0].astype(pos.dtype)
    return jnp.concatenate([pos[:cls_slots], grid], axis=0)
