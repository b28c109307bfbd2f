"""Classifier-free guidance for the captioners ("Guiding image captioning models towards more
specific captions", Kornblith et al. 2023): train with the image dropped for a fraction p of
the captions, so one decoder gives both p(caption | image) and p(caption).

Which captions lose their image is decided inside the model from the pixels it is given:
`dropped_images` hashes each (randomly cropped, so different at every draw) image to a
uniform number in [0, 1) and drops those below p. The batch depends only on (seed, step),
so the choice does too, with no RNG to thread through the train step. A dropped image's
caption memory is all zeros (`drop_memory`); decoding without the image uses the same zeros
(bigvl/inference/guided_decoding.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dropped_images(images: jax.Array, fraction: float) -> jax.Array:
    """images uint8 [B,S,S,3] (or float), fraction p in [0, 1] → bool [B]: True = train this caption
    without its image. A multiplicative hash of the pixels (uint32 arithmetic, wrapping)."""
    flat = images.reshape(images.shape[0], -1)
    pixels = (flat if jnp.issubdtype(flat.dtype, jnp.integer) else
              jax.lax.bitcast_convert_type(flat.astype(jnp.float32), jnp.int32)).astype(jnp.uint32)
    weights = jnp.arange(1, flat.shape[1] + 1, dtype=jnp.uint32) * jnp.uint32(2654435761)  # Knuth's constant
    h = jnp.sum(pixels * weights + (pixels >> 3) * jnp.uint32(40503), axis=1, dtype=jnp.uint32)
    h = (h ^ (h >> 16)) * jnp.uint32(0x45D9F3B)  # finaliser: mixes the high bits down
    h = h ^ (h >> 16)
    return (h >> 8).astype(jnp.float32) / float(1 << 24) < fraction


def drop_memory(memory: jax.Array, images: jax.Array, fraction: float) -> jax.Array:
    """memory [B,N,D] → the same with the rows of dropped images zeroed (fraction 0: unchanged)."""
    if fraction <= 0:
        return memory
    return jnp.where(dropped_images(images, fraction)[:, None, None], jnp.zeros_like(memory), memory)
