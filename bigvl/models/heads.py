"""The joint-space heads every contrastive model shares (TwoTower, CoCa, CLIPS).

- `projection`: the linear map of a tower's features [.., D] to the joint space [.., E]
  (kernel logical axes ("embed", "proj"), optional bias ("proj"));
- `logit_scale_param` / `logit_bias_param`: the learnable logit scale, stored as its log
  (`log_logit_scale`, = log temperature_init), and SigLIP's logit bias (`logit_bias`), both
  float32 scalars created directly on the calling module;
- `logit_scale`: exp(log scale), what the models output (the cap is on the param: the
  optimizer clamps `log_logit_scale` to ≤ log max_logit_scale after each update, as open_clip
  clamps it in place, so the gradient keeps flowing below the cap);
- `logit_scale_of`: exp(log scale) with the cap, for reading a stored param;
- `l2_normalize`: unit rows in float32.

The params land on the module that calls these (in its `setup`), under the names given
there, so the param trees of the models are those they had when each built its own heads.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.options import ModelOptions
from bigvl.models.transformer import named


def l2_normalize(x: jax.Array) -> jax.Array:
    """[..., E] any float → float32 [..., E] with unit rows (rows of zeros stay zero)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def logit_scale(log_logit_scale: jax.Array) -> jax.Array:
    """log scale f32 [] → exp(log scale) f32 []: the multiplier of the cosine logits (its gradient
    never vanishes; the train step's `clamp_log_logit_scale` keeps the param under the cap)."""
    return jnp.exp(log_logit_scale)


def logit_scale_of(log_logit_scale: jax.Array, max_logit_scale: float) -> jax.Array:
    """log scale f32 [] → exp(log scale) f32 [], capped at `max_logit_scale` when > 0: the scale a
    stored param stands for (a run from before the param clamp may hold one above the cap)."""
    scale = jnp.exp(log_logit_scale)
    return jnp.minimum(scale, max_logit_scale) if max_logit_scale > 0 else scale


def projection(features: int, options: ModelOptions, *, use_bias: bool = False, name: str | None = None) -> nn.Dense:
    """A Dense [.., D] → [.., features] in `options.dtype`: lecun-normal kernel [D, features] named
    ("embed", "proj"), zero bias [features] named ("proj",) when `use_bias`."""
    return nn.Dense(features, use_bias=use_bias, dtype=options.dtype, param_dtype=options.param_dtype,
                    kernel_init=named(nn.initializers.lecun_normal(), "embed", "proj"),
                    bias_init=named(nn.initializers.zeros, "proj"), name=name)


def _scalar_param(module: nn.Module, name: str, value: float) -> jax.Array:
    return module.param(name, named(lambda *_: jnp.asarray(value, jnp.float32)), (), jnp.float32)


def logit_scale_param(module: nn.Module, temperature_init: float) -> jax.Array:
    """Creates `module`'s param 'log_logit_scale' (f32 [], = log temperature_init) and returns it."""
    return _scalar_param(module, "log_logit_scale", math.log(temperature_init))


def logit_bias_param(module: nn.Module, bias_init: float) -> jax.Array:
    """Creates `module`'s param 'logit_bias' (f32 [], = bias_init; SigLIP) and returns it."""
    return _scalar_param(module, "logit_bias", float(bias_init))
