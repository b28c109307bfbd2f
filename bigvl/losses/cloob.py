"""CLOOB (Fürst et al. 2022): modern Hopfield retrieval from the batch's stores + the InfoLOOB objective.

Checked formula by formula against the authors' released code (ml-jku/cloob,
src/training/methods.py `cloob`, `infoLOOB_loss`, `hopfield_retrieval`; the Hopfield layer of
src/training/train.py: one head, no projections, no normalisation, `scaling` = β):

    Ret(ξ; M) = norm(softmax(β · ξ Mᵀ) M)          rows ξ [B, D], store M [B, D] → [B, D], unit rows
    U_x = Ret(x; X)   U_y = Ret(y; X)              images and texts retrieved from the image store
    V_x = Ret(x; Y)   V_y = Ret(y; Y)              ... and from the text store
    InfoLOOB(a, c) = mean_i [ logsumexp_{j≠i} (a_i·c_j / τ) − a_i·c_i / τ ]   (positive left out of the denominator)
    loss = τ · [ InfoLOOB(U_x, U_y) + InfoLOOB(V_y, V_x) ]

x = image_embeds, y = text_embeds (L2-normalised), 1/τ = the model's logit scale (the code's
`inv_tau`, default 14.3, also its Hopfield β default). Each InfoLOOB runs one way (anchors
in rows), as in the code: the image term anchors on images, the text term on texts.

`cloob_loss` is plain jnp on global arrays (GSPMD inserts the collectives: the single-device
value on any mesh, B × B scores materialised). `tiled_cloob_loss` computes the same value a
row tile at a time (`lax.map` over tiles, each under `jax.checkpoint`), so forward and
backward hold O(tile · B) scores, never B × B. Everything computes in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

CODE_BETA = 14.3  # ml-jku/cloob params.py --scale-hopfield default (and --init-inv-tau)


def _unit(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def hopfield_retrieval(state: jax.Array, stored: jax.Array, beta: float) -> jax.Array:
    """Ret(ξ; M): state [R, D], stored [M, D], β → float32 [R, D], unit rows: norm(softmax(β ξ Mᵀ) M)."""
    state, stored = state.astype(jnp.float32), stored.astype(jnp.float32)
    return _unit(jax.nn.softmax(beta * (state @ stored.T), axis=-1) @ stored)


def _loob_rows(anchors: jax.Array, candidates: jax.Array, inv_tau: jax.Array, first_row) -> jax.Array:
    """anchors [R, D] (global rows first_row.. first_row+R), candidates [B, D] → per-row InfoLOOB float32 [R]."""
    logits = inv_tau * (anchors @ candidates.T)  # [R, B]
    rows = first_row + jnp.arange(anchors.shape[0])
    own = jnp.arange(candidates.shape[0])[None, :] == rows[:, None]
    positives = jnp.sum(jnp.where(own, logits, 0.0), axis=1)
    return jax.nn.logsumexp(jnp.where(own, -jnp.inf, logits), axis=1) - positives


def info_loob(anchors: jax.Array, candidates: jax.Array, inv_tau: jax.Array) -> jax.Array:
    """InfoLOOB: anchors, candidates [B, D] (row i of each a positive pair), 1/τ scalar →
    float32 mean_i [logsumexp_{j≠i} a_i·c_j/τ − a_i·c_i/τ] (not yet multiplied by τ)."""
    inv_tau = jnp.asarray(inv_tau, jnp.float32)
    return jnp.mean(_loob_rows(anchors.astype(jnp.float32), candidates.astype(jnp.float32), inv_tau, 0))


def cloob_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
               beta: float = CODE_BETA) -> jax.Array:
    """CLOOB on the global batch: image_embeds, text_embeds [B, D] (row i a positive pair),
    logit_scale = 1/τ scalar, β the Hopfield inverse temperature → float32 scalar
    τ · [InfoLOOB(U_x, U_y) + InfoLOOB(V_y, V_x)] (module docstring)."""
    x, y = image_embeds.astype(jnp.float32), text_embeds.astype(jnp.float32)
    inv_tau = jnp.asarray(logit_scale, jnp.float32)
    u_x, u_y = hopfield_retrieval(x, x, beta), hopfield_retrieval(y, x, beta)
    v_x, v_y = hopfield_retrieval(x, y, beta), hopfield_retrieval(y, y, beta)
    return (info_loob(u_x, u_y, inv_tau) + info_loob(v_y, v_x, inv_tau)) / inv_tau


def _by_tiles(fn, rows: jax.Array, tile: int) -> jax.Array:
    """fn(row tile [t, D], first row) → [t, ...] over every row tile of rows [B, D], rematerialised in
    the backward (jax.checkpoint), concatenated back to [B, ...]."""
    count = rows.shape[0] // tile
    tiles = rows.reshape(count, tile, rows.shape[1])
    out = jax.lax.map(jax.checkpoint(lambda a: fn(a[0], a[1] * tile)), (tiles, jnp.arange(count)))
    return out.reshape((rows.shape[0],) + out.shape[2:])


def tiled_cloob_loss(image_embeds: jax.Array, text_embeds: jax.Array, logit_scale: jax.Array,
                     beta: float = CODE_BETA, tile_size: int = 1024) -> jax.Array:
    """`cloob_loss`, a row tile at a time: [B, D], [B, D], 1/τ → float32 scalar. Holds O(tile · B)
    scores in the forward and the backward (each tile recomputed), never B × B. The tile is the
    largest divisor of B that is ≤ tile_size."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    batch = image_embeds.shape[0]
    tile = next(t for t in range(min(tile_size, batch), 0, -1) if batch % t == 0)
    x, y = image_embeds.astype(jnp.float32), text_embeds.astype(jnp.float32)
    inv_tau = jnp.asarray(logit_scale, jnp.float32)

    def retrieve(states, store):
        return _by_tiles(lambda rows, _: hopfield_retrieval(rows, store, beta), states, tile)

    def loob(anchors, candidates):
        return jnp.mean(_by_tiles(lambda rows, first: _loob_rows(rows, candidates, inv_tau, first), anchors, tile))

    u_x, u_y, v_x, v_y = retrieve(x, x), retrieve(y, x), retrieve(x, y), retrieve(y, y)
    return (loob(u_x, u_y) + loob(v_y, v_x)) / inv_tau
