"""The ViT image tower: patchify → Dense patch embedding → (+cls) + learned positions → encoder → pool.

Options cover both reference families:
- open_clip CLIP: `patch_bias=False`, `ln_pre=True`, pool 'cls' (positions include the cls slot).
- big_vision SigLIP: `patch_bias=True`, `ln_pre=False`, pool 'map'.
The projection to the joint embedding lives in `two_tower.TwoTower`, not here.

The defaults follow big_vision: pixels go in as x/127.5 − 1, LayerNorm eps 1e-6, tanh GELU.
Imported weights set what they were trained with (bigvl/convert): `pixel_mean`/`pixel_std`
(CLIP's per-channel mean/std over x/255), `ln_eps` 1e-5 and QuickGELU or exact GELU
(`activation`, bigvl/models/transformer.py).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.distill_heads import resize_position_grid
from bigvl.models.matmul import flax_dot_general
from bigvl.models.naflex import NaflexImages, masked_mean, resize_positions, valid_lengths
from bigvl.models.options import ModelOptions
from bigvl.models.transformer import DENSE_INIT, ZEROS, Dtype, Encoder, MAPHead, layer_norm, named

POOLS = ("cls", "gap", "map")
STEMS = ("patch", "conv")


def conv_stem_channels(width: int, patch_size: int) -> list[int]:
    """Output channels of the conv stem's stride-2 3×3 convolutions: log2(patch_size) of them,
    doubling up to `width` (patch 8, width 128 → [32, 64, 128])."""
    n = patch_size.bit_length() - 1
    if patch_size < 2 or 2 ** n != patch_size:
        raise ValueError(f"model.image.stem 'conv' needs a power-of-two patch size ≥ 2, got {patch_size}")
    return [max(width >> (n - 1 - i), 8) for i in range(n)]


class ConvStem(nn.Module):
    """Xiao et al. 2021, "Early convolutions help transformers see better": stride-2 3×3
    convolutions (LayerNorm, GELU) down to the patch grid, then a 1×1 projection to `width`.

    images [B,S,S,C] float → tokens [B,(S/P)²,width]; P = patch_size = 2^(number of convolutions).
    """
    width: int
    patch_size: int
    ln_eps: float = 1e-6
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtypes = dict(dtype=self.options.dtype, param_dtype=self.options.param_dtype)
        for i, channels in enumerate(conv_stem_channels(self.width, self.patch_size)):
            x = nn.Conv(channels, (3, 3), strides=2, padding=1, use_bias=False, **dtypes,
                        kernel_init=named(DENSE_INIT, None, None, None, "mlp"), name=f"conv_{i}")(x)
            x = nn.gelu(nn.LayerNorm(epsilon=self.ln_eps, **dtypes,
                                     scale_init=named(nn.initializers.ones, "mlp"), bias_init=named(ZEROS, "mlp"),
                                     name=f"conv_{i}_norm")(x))
        b, h, w, c = x.shape
        return nn.Dense(self.width, **dtypes,
                        kernel_init=named(DENSE_INIT, "mlp", "embed"), bias_init=named(ZEROS, "embed"),
                        name="proj")(x.reshape(b, h * w, c))


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """[B,H,W,C] → [B, (H/P)·(W/P), P·P·C], patches in row-major order, pixels (row, col, channel)."""
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}")
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


UNIT_RANGE = (0.5, 0.5, 0.5)  # mean = std = 0.5 over x/255 is x/127.5 − 1 (big_vision, SigLIP)


def to_model_range(images: jax.Array, dtype: Dtype, mean: tuple = UNIT_RANGE, std: tuple = UNIT_RANGE) -> jax.Array:
    """uint8 pixels → (x/255 − mean)/std per channel (default: x/127.5 − 1 in [-1, 1], computed
    as such); float inputs are taken as already normalised."""
    if jnp.issubdtype(images.dtype, jnp.integer):
        if tuple(mean) == UNIT_RANGE and tuple(std) == UNIT_RANGE:
            return (images.astype(jnp.float32) * (1.0 / 127.5) - 1.0).astype(dtype)
        mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
        return ((images.astype(jnp.float32) / 255.0 - mean) / std).astype(dtype)
    return images.astype(dtype)


class VisionTower(nn.Module):
    """images [B,S,S,3] (uint8, or float in [-1,1]) → (pooled [B,D], patch tokens [B,N,D]) in `options.dtype`.

    N = (S/P)². Tokens are the final-LayerNorm outputs of the patch positions (the cls
    token, when used, is the pooled output and not among them).
    """
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    pool: str = "cls"
    patch_bias: bool = False
    ln_pre: bool = True
    activation: str = "gelu_tanh"  # transformer.ACTIVATIONS
    ln_eps: float = 1e-6
    pixel_mean: tuple = UNIT_RANGE  # uint8 images → (x/255 − mean)/std
    pixel_std: tuple = UNIT_RANGE
    stem: str = "patch"  # STEMS: one Dense per patch (ViT), or ConvStem
    options: ModelOptions = ModelOptions()  # dtypes, remat, attention, weight grads, scanned blocks
    # NaFlex (bigvl/models/naflex.py): > 0 = the side G of the learned G×G position grid; the tower then reads
    # NaflexImages (patches [B,L,p·p·3], spatial_shapes [B,2]), resizes the grid to each (h, w) and masks the padding.
    naflex_positions: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, pooled_only: bool = False, patch_mask: jax.Array | None = None,
                 mask_token: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """pooled_only: the caller wants the pooled output alone; with cls pooling the last block
        then computes the cls position only (`Encoder`'s keep) and tokens is None.
        patch_mask bool [B,N], mask_token [W] (SigLIP 2's masked prediction, bigvl/losses/masked_prediction.py):
        masked patch embeddings become the mask token, before the positions are added. Images smaller
        than the model's (SigLIP 2's local crops) get the position grid resized bilinearly."""
        if self.pool not in POOLS:
            raise ValueError(f"model.image.pool {self.pool!r} is not one of {POOLS}")
        if self.stem not in STEMS:
            raise ValueError(f"model.image.stem {self.stem!r} is not one of {STEMS}")
        d, opts = self.width, self.options
        if self.naflex_positions:
            return self._naflex(images, pooled_only)
        pixels = to_model_range(images, opts.dtype, self.pixel_mean, self.pixel_std)
        if self.stem == "conv":
            x = ConvStem(d, self.patch_size, self.ln_eps, opts, name="conv_stem")(pixels)
        else:
            patches = nn.with_logical_constraint(patchify(pixels, self.patch_size), ("batch", "seq", None))
            x = nn.Dense(d, use_bias=self.patch_bias, dtype=opts.dtype, param_dtype=opts.param_dtype,
                         dot_general=flax_dot_general(opts.weight_grad),
                         kernel_init=named(DENSE_INIT, "patch", "embed"), bias_init=named(ZEROS, "embed"),
                         name="patch_embedding")(patches)
        batch = x.shape[0]
        if patch_mask is not None:
            x = jnp.where(patch_mask[..., None], mask_token.astype(x.dtype), x)
        if self.pool == "cls":
            cls = self.param("cls_token", named(nn.initializers.normal(d ** -0.5), "embed"), (d,), opts.param_dtype)
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(opts.dtype), (batch, 1, d)), x], axis=1)
        stored = nn.unbox(self.get_variable("params", "pos_embedding")) if self.has_variable("params", "pos_embedding") else None
        if stored is not None and stored.shape[0] != x.shape[1]:  # smaller images (local crops): the grid resized
            pos = resize_position_grid(stored, x.shape[1] - int(self.pool == "cls"), int(self.pool == "cls"))
        else:
            pos = self.param("pos_embedding", named(nn.initializers.normal(d ** -0.5), "pos", "embed"),
                             (x.shape[1], d), opts.param_dtype)
        x = nn.with_logical_constraint(x + pos.astype(opts.dtype), ("batch", "seq", "act_embed"))
        return self._encode_and_pool(x, None, pooled_only)

    def _encode_and_pool(self, x: jax.Array, lengths: jax.Array | None,
                         pooled_only: bool) -> tuple[jax.Array, jax.Array | None]:
        """Embedded tokens [B,T,D] (+ positions) → (pooled, tokens): ln_pre, the encoder and the pooling,
        shared by the square and NaFlex paths; lengths int [B] masks padding (NaFlex), None = all valid."""
        opts = self.options
        if self.ln_pre:
            x = layer_norm(opts, "ln_pre", self.ln_eps)(x)
        keep = 0 if pooled_only and self.pool == "cls" else None
        x = Encoder(self.depth, self.num_heads, self.mlp_dim, False, self.activation, self.ln_eps, opts,
                    name="encoder")(x, lengths, keep)
        if keep is not None:
            pooled, tokens = x[:, 0], None
        elif self.pool == "cls":
            pooled, tokens = x[:, 0], x[:, 1:]
        elif self.pool == "gap":
            mean = jnp.mean(x.astype(jnp.float32), axis=1) if lengths is None else masked_mean(x, lengths)
            pooled, tokens = mean.astype(opts.dtype), x
        else:
            pooled, tokens = MAPHead(self.num_heads, self.mlp_dim, 1, self.activation, self.ln_eps, opts,
                                     name="map_head")(x, lengths)[:, 0], x
        return nn.with_logical_constraint(pooled, ("batch", "act_embed")), tokens

    def _naflex(self, images: NaflexImages, pooled_only: bool) -> tuple[jax.Array, jax.Array | None]:
        """NaflexImages → (pooled [B,D], tokens [B,L,D], rows ≥ h·w padding): the square path's params
        (pos_embedding [(1+)G², D]) with the position grid resized per example and the padding masked."""
        if not isinstance(images, NaflexImages):
            raise ValueError("model.image.naflex: the image tower reads NaflexImages (batch keys image_patches, "
                             f"image_spatial_shapes), got {type(images).__name__}")
        if self.stem != "patch":
            raise ValueError(f"model.image.naflex needs model.image.stem 'patch', got {self.stem!r}")
        d, opts, g = self.width, self.options, self.naflex_positions
        b, length, flat = images.patches.shape
        pixels = to_model_range(images.patches.reshape(b, length, flat // 3, 3), opts.dtype,
                                self.pixel_mean, self.pixel_std).reshape(b, length, flat)
        x = nn.Dense(d, use_bias=self.patch_bias, dtype=opts.dtype, param_dtype=opts.param_dtype,
                     dot_general=flax_dot_general(opts.weight_grad),
                     kernel_init=named(DENSE_INIT, "patch", "embed"), bias_init=named(ZEROS, "embed"),
                     name="patch_embedding")(nn.with_logical_constraint(pixels, ("batch", "seq", None)))
        cls_slots = int(self.pool == "cls")
        if cls_slots:
            cls = self.param("cls_token", named(nn.initializers.normal(d ** -0.5), "embed"), (d,), opts.param_dtype)
        pos = self.param("pos_embedding", named(nn.initializers.normal(d ** -0.5), "pos", "embed"),
                         (cls_slots + g * g, d), opts.param_dtype)
        x = x + resize_positions(pos[cls_slots:].reshape(g, g, d), images.spatial_shapes, length).astype(opts.dtype)
        if cls_slots:
            cls = jnp.broadcast_to((cls + pos[0]).astype(opts.dtype), (b, 1, d))
            x = jnp.concatenate([cls, x], axis=1)
        x = nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))
        return self._encode_and_pool(x, valid_lengths(images.spatial_shapes) + cls_slots, pooled_only)
