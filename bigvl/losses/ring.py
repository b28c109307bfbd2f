"""Contrastive losses that never hold the B x B logits: a ring of devices, tiles inside each.

The global batch [B, D] is split over the mesh's batch axes ('data', 'fsdp'); each of the
n = data * fsdp devices keeps its own b = B / n image rows and passes its text block
around a ring with `jax.lax.ppermute` (the `tensor` axis holds replicas that do the same
work). At hop h a device scores its images against the text block of device (k + h) mod n,
tile by tile (`tile` x `tile` logits at a time, `lax.fori_loop`), and keeps only
per-row statistics. Statistics that belong to the visiting texts (the column
log-sum-exp of the softmax loss, the texts' gradients) travel with the block and are home
again after the last hop.

Both losses are `jax.custom_vjp` functions: the forward saves the embeddings and O(b)
per-row statistics, the backward runs the ring again and recomputes every tile, so a
device holds O(b * D + tile^2) floats, never O(b * B) (an all-gather loss) nor O(B^2)
(the plain loss in `bigvl.losses.contrastive`). Values and gradients equal the plain losses.

- `tiled_softmax_contrastive_loss`: CLIP InfoNCE (Inf-CL style running log-sum-exp).
- `ring_sigmoid_contrastive_loss`: SigLIP, positives in each device's own block.
- `all_gather_softmax_contrastive_loss`: the open_clip "local loss" (gather all
  embeddings, each device scores its b rows against all B); O(b * B) per device, kept as
  the reference point for the memory benchmark.

Call them inside `jax.jit` (under `jax.set_mesh(mesh)` or not) on [B, D] arrays of any
sharding; every loss computes in float32 and returns gradients in the inputs' dtypes.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from bigvl.parallel.mesh import BATCH_AXES

DEFAULT_TILE_SIZE = 1024  # 4 MiB of float32 logits per tile

ROWS = P(BATCH_AXES)  # a [B, ...] array split over the batch axes
SCALAR = P()


def _ring_size(mesh: Mesh) -> int:
    return mesh.shape[BATCH_AXES[0]] * mesh.shape[BATCH_AXES[1]]


def _local_batch(global_batch: int, mesh: Mesh) -> int:
    n = _ring_size(mesh)
    if global_batch % n:
        raise ValueError(f"global batch {global_batch} is not divisible by the {n} devices of the ring "
                         f"(mesh axes {' x '.join(f'{a}={mesh.shape[a]}' for a in BATCH_AXES)})")
    return global_batch // n


def _tile_for(local_batch: int, tile_size: int) -> int:
    """The largest divisor of `local_batch` that is <= tile_size (tiles must cover b exactly)."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    return next(t for t in range(min(tile_size, local_batch), 0, -1) if local_batch % t == 0)


def _varying(x: jax.Array) -> jax.Array:
    """Marks a freshly created per-device value as varying over the ring axes (shard_map typing)."""
    return jax.lax.pcast(x, BATCH_AXES, to="varying")


def _to_next(tree, n: int):
    """Sends every leaf one step along the ring: device j's value goes to device j - 1, so at
    hop h device k holds the block that started on device (k + h) mod n."""
    perm = [(j, (j - 1) % n) for j in range(n)]
    return jax.tree.map(lambda a: jax.lax.ppermute(a, BATCH_AXES, perm), tree)


def _rows(a: jax.Array, start, size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(a, start, size, axis=0)


def _set_rows(a: jax.Array, start, value: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice_in_dim(a, value, start, axis=0)


# A tile function scores image rows against text rows of one tile. Forward:
#   stats_fn(hop, row0, col0, dots[t, t]) -> (row_part[t], col_part[t])
# merged into running per-row / per-column statistics with `merge`. Backward:
#   grad_fn(hop, row0, col0, dots[t, t], row_stats[t], col_stats[t]) -> (d_dots[t, t], scalar grads)
# where dots = images_tile @ texts_tile.T (unscaled cosine similarities, float32).


def _ring_forward(stats_fn: Callable, merge: Callable, init: float, x: jax.Array, y: jax.Array,
                  n: int, tile: int) -> tuple[jax.Array, jax.Array]:
    """Per-device forward: x, y [b, D] float32 -> (row_stats [b] for the local images,
    col_stats [b] for the local texts), each merged over all n text/image blocks."""
    b = x.shape[0]
    num_tiles = b // tile

    def hop(h, row_stats, y_visiting, col_stats):
        def row_tile(i, carry):
            row_stats, col_stats = carry
            x_tile = _rows(x, i * tile, tile)

            def col_tile(j, carry):
                row_acc, col_stats = carry
                dots = x_tile @ _rows(y_visiting, j * tile, tile).T
                row_part, col_part = stats_fn(h, i * tile, j * tile, dots)
                col_acc = merge(_rows(col_stats, j * tile, tile), col_part)
                return merge(row_acc, row_part), _set_rows(col_stats, j * tile, col_acc)

            row_acc, col_stats = jax.lax.fori_loop(
                0, num_tiles, col_tile, (_rows(row_stats, i * tile, tile), col_stats))
            return _set_rows(row_stats, i * tile, row_acc), col_stats

        return jax.lax.fori_loop(0, num_tiles, row_tile, (row_stats, col_stats))

    def hop_and_pass(h, carry):
        row_stats, y_visiting, col_stats = carry
        row_stats, col_stats = hop(h, row_stats, y_visiting, col_stats)
        y_visiting, col_stats = _to_next((y_visiting, col_stats), n)
        return row_stats, y_visiting, col_stats

    fresh = _varying(jnp.full((b,), init, jnp.float32))
    row_stats, y_visiting, col_stats = jax.lax.fori_loop(0, n - 1, hop_and_pass, (fresh, y, fresh))
    row_stats, col_stats = hop(n - 1, row_stats, y_visiting, col_stats)
    return row_stats, _to_next(col_stats, n)  # the last pass brings the column stats home


def _ring_backward(grad_fn: Callable, num_scalars: int, x: jax.Array, y: jax.Array,
                   row_stats: jax.Array, col_stats: jax.Array, n: int, tile: int):
    """Per-device backward: recomputes every tile. Returns (dx [b, D], dy [b, D], scalar grads
    [num_scalars], summed over this device's tiles only; the caller psums them)."""
    b, d = x.shape
    num_tiles = b // tile

    def hop(h, dx, y_visiting, col_visiting, dy_visiting, scalars):
        def row_tile(i, carry):
            dx, dy_visiting, scalars = carry
            x_tile = _rows(x, i * tile, tile)
            row_tile_stats = _rows(row_stats, i * tile, tile)

            def col_tile(j, carry):
                dx_tile, dy_visiting, scalars = carry
                y_tile = _rows(y_visiting, j * tile, tile)
                dots = x_tile @ y_tile.T
                d_dots, d_scalars = grad_fn(h, i * tile, j * tile, dots, row_tile_stats,
                                            _rows(col_visiting, j * tile, tile))
                dy_tile = _rows(dy_visiting, j * tile, tile) + d_dots.T @ x_tile
                return (dx_tile + d_dots @ y_tile, _set_rows(dy_visiting, j * tile, dy_tile),
                        scalars + d_scalars)

            dx_tile, dy_visiting, scalars = jax.lax.fori_loop(
                0, num_tiles, col_tile, (_rows(dx, i * tile, tile), dy_visiting, scalars))
            return _set_rows(dx, i * tile, dx_tile), dy_visiting, scalars

        return jax.lax.fori_loop(0, num_tiles, row_tile, (dx, dy_visiting, scalars))

    def hop_and_pass(h, carry):
        dx, y_visiting, col_visiting, dy_visiting, scalars = carry
        dx, dy_visiting, scalars = hop(h, dx, y_visiting, col_visiting, dy_visiting, scalars)
        y_visiting, col_visiting, dy_visiting = _to_next((y_visiting, col_visiting, dy_visiting), n)
        return dx, y_visiting, col_visiting, dy_visiting, scalars

    zeros = _varying(jnp.zeros((b, d), jnp.float32))
    carry = (zeros, y, col_stats, zeros, _varying(jnp.zeros((num_scalars,), jnp.float32)))
    dx, y_visiting, col_visiting, dy_visiting, scalars = jax.lax.fori_loop(0, n - 1, hop_and_pass, carry)
    dx, dy_visiting, scalars = hop(n - 1, dx, y_visiting, col_visiting, dy_visiting, scalars)
    return dx, _to_next(dy_visiting, n), scalars  # the texts' gradients go home with the last pass


def _check_embeds(image_embeds: jax.Array, text_embeds: jax.Array) -> None:
    if image_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(f"image_embeds {image_embeds.shape} and text_embeds {text_embeds.shape} must "
                         "both be [B, D]")


# ------------------------------------------------------------------ softmax (InfoNCE), tiled ring


def _softmax_lse_sum(mesh: Mesh, tile_size: int) -> Callable:
    """f(x [B, D], y [B, D], scale [], all float32) -> sum_i lse_j(z_ij) + sum_j lse_i(z_ij) with
    z = scale * x y^T, as a custom_vjp that saves only x, y, scale and the 2B log-sum-exps."""
    n = _ring_size(mesh)

    def per_device_forward(x, y, scale):
        tile = _tile_for(x.shape[0], tile_size)

        def stats(hop, row0, col0, dots):
            logits = scale * dots
            return jax.nn.logsumexp(logits, axis=1), jax.nn.logsumexp(logits, axis=0)

        row_lse, col_lse = _ring_forward(stats, jnp.logaddexp, -jnp.inf, x, y, n, tile)
        total = jax.lax.psum(jnp.sum(row_lse) + jnp.sum(col_lse), BATCH_AXES)
        return total, row_lse, col_lse

    def per_device_backward(x, y, scale, row_lse, col_lse, cotangent):
        tile = _tile_for(x.shape[0], tile_size)

        def grads(hop, row0, col0, dots, row_lse_tile, col_lse_tile):
            logits = scale * dots
            d_logits = cotangent * (jnp.exp(logits - row_lse_tile[:, None])
                                    + jnp.exp(logits - col_lse_tile[None, :]))
            return scale * d_logits, jnp.sum(d_logits * dots)[None]

        dx, dy, d_scale = _ring_backward(grads, 1, x, y, row_lse, col_lse, n, tile)
        return dx, dy, jax.lax.psum(d_scale[0], BATCH_AXES)

    forward = jax.shard_map(per_device_forward, mesh=mesh, in_specs=(ROWS, ROWS, SCALAR),
                            out_specs=(SCALAR, ROWS, ROWS))
    backward = jax.shard_map(per_device_backward, mesh=mesh,
                             in_specs=(ROWS, ROWS, SCALAR, ROWS, ROWS, SCALAR),
                             out_specs=(ROWS, ROWS, SCALAR))

    @jax.custom_vjp
    def lse_sum(x, y, scale):
        return forward(x, y, scale)[0]

    def lse_sum_fwd(x, y, scale):
        total, row_lse, col_lse = forward(x, y, scale)
        return total, (x, y, scale, row_lse, col_lse)

    def lse_sum_bwd(residuals, cotangent):
        return backward(*residuals, cotangent)

    lse_sum.defvjp(lse_sum_fwd, lse_sum_bwd)
    return lse_sum


def tiled_softmax_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array,
                                   logit_scale: jax.Array, *, mesh: Mesh,
                                   tile_size: int = DEFAULT_TILE_SIZE) -> jax.Array:
    """CLIP InfoNCE equal to `bigvl.losses.contrastive.softmax_contrastive_loss`, without the B x B logits.

    image_embeds, text_embeds: [B, D] (any float dtype, row i of each a positive pair);
    logit_scale: scalar multiplier. mesh: B is split over its ('data', 'fsdp') axes, which
    must divide B. tile_size: the largest tile edge (the tile is the largest divisor of the
    per-device batch b = B / (data * fsdp) not above it). Per device memory: O(b * D +
    tile^2) in the forward and backward. Returns the float32 scalar loss.
    """
    _check_embeds(image_embeds, text_embeds)
    batch = image_embeds.shape[0]
    _local_batch(batch, mesh)
    scale = jnp.asarray(logit_scale, jnp.float32)
    # Upcast before the custom VJP: the two terms' gradients add in float32, rounded once.
    x, y = image_embeds.astype(jnp.float32), text_embeds.astype(jnp.float32)
    positives = scale * jnp.sum(x * y)
    lse_sum = _softmax_lse_sum(mesh, tile_size)(x, y, scale)
    return (0.5 * lse_sum - positives) / batch


# ------------------------------------------------------------------ sigmoid (SigLIP), ring


def _sigmoid_log_likelihood(mesh: Mesh, tile_size: int) -> Callable:
    """f(x [B, D], y [B, D], scale [], bias [], all float32) -> sum_ij log_sigmoid(s_ij * (scale
    <x_i, y_j> + bias)), s = +1 on the diagonal else -1, as a custom_vjp saving only its inputs."""
    n = _ring_size(mesh)

    def signed_logits(scale, bias, hop, row0, col0, dots):
        """The tile's logits and labels (+1 only for the diagonal of the device's own block)."""
        rows = row0 + jnp.arange(dots.shape[0])[:, None]
        cols = col0 + jnp.arange(dots.shape[1])[None, :]
        signs = jnp.where((hop == 0) & (rows == cols), 1.0, -1.0)
        return scale * dots + bias, signs

    def per_device_forward(x, y, scale, bias):
        tile = _tile_for(x.shape[0], tile_size)

        def stats(hop, row0, col0, dots):
            logits, signs = signed_logits(scale, bias, hop, row0, col0, dots)
            log_likelihood = jax.nn.log_sigmoid(signs * logits)
            return jnp.sum(log_likelihood, axis=1), jnp.zeros((dots.shape[1],), jnp.float32)

        row_sums, _ = _ring_forward(stats, jnp.add, 0.0, x, y, n, tile)
        return jax.lax.psum(jnp.sum(row_sums), BATCH_AXES)

    def per_device_backward(x, y, scale, bias, cotangent):
        tile = _tile_for(x.shape[0], tile_size)

        def grads(hop, row0, col0, dots, row_stats, col_stats):
            logits, signs = signed_logits(scale, bias, hop, row0, col0, dots)
            d_logits = cotangent * signs * jax.nn.sigmoid(-signs * logits)
            return scale * d_logits, jnp.stack([jnp.sum(d_logits * dots), jnp.sum(d_logits)])

        unused = _varying(jnp.zeros((x.shape[0],), jnp.float32))
        dx, dy, d_scalars = _ring_backward(grads, 2, x, y, unused, unused, n, tile)
        d_scalars = jax.lax.psum(d_scalars, BATCH_AXES)
        return dx, dy, d_scalars[0], d_scalars[1]

    forward = jax.shard_map(per_device_forward, mesh=mesh, in_specs=(ROWS, ROWS, SCALAR, SCALAR),
                            out_specs=SCALAR)
    backward = jax.shard_map(per_device_backward, mesh=mesh,
                             in_specs=(ROWS, ROWS, SCALAR, SCALAR, SCALAR),
                             out_specs=(ROWS, ROWS, SCALAR, SCALAR))

    @jax.custom_vjp
    def log_likelihood(x, y, scale, bias):
        return forward(x, y, scale, bias)

    def log_likelihood_fwd(x, y, scale, bias):
        return forward(x, y, scale, bias), (x, y, scale, bias)

    def log_likelihood_bwd(residuals, cotangent):
        return backward(*residuals, cotangent)

    log_likelihood.defvjp(log_likelihood_fwd, log_likelihood_bwd)
    return log_likelihood


def ring_sigmoid_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array,
                                  logit_scale: jax.Array, logit_bias: jax.Array, *, mesh: Mesh,
                                  tile_size: int = DEFAULT_TILE_SIZE) -> jax.Array:
    """SigLIP loss equal to `bigvl.losses.contrastive.sigmoid_contrastive_loss`, without the B x B logits.

    image_embeds, text_embeds: [B, D] (any float dtype); logit_scale, logit_bias: scalars.
    Each device keeps its b x b block with the positives and scores its images against every
    other device's texts as they pass around the ring (negatives only); the backward
    recomputes each block (custom VJP), so per device memory is O(b * D + tile^2) whatever
    the number of hops. mesh and tile_size as in `tiled_softmax_contrastive_loss`.
    Returns the float32 scalar loss -1/B * sum_ij log_sigmoid(z_ij * logit_ij).
    """
    _check_embeds(image_embeds, text_embeds)
    batch = image_embeds.shape[0]
    _local_batch(batch, mesh)
    log_likelihood = _sigmoid_log_likelihood(mesh, tile_size)(
        image_embeds.astype(jnp.float32), text_embeds.astype(jnp.float32),
        jnp.asarray(logit_scale, jnp.float32),
        jnp.asarray(logit_bias, jnp.float32))
    return -log_likelihood / batch


# ------------------------------------------------------------------ all-gather reference


def all_gather_softmax_contrastive_loss(image_embeds: jax.Array, text_embeds: jax.Array,
                                        logit_scale: jax.Array, *, mesh: Mesh) -> jax.Array:
    """open_clip's distributed "local loss": each device gathers all B embeddings (with
    gradients) and computes the cross-entropies of its own b rows, [b, B] logits per direction.

    Same value and gradients as `bigvl.losses.contrastive.softmax_contrastive_loss`; per device memory
    O(b * B). Kept as the middle point of the memory benchmark. Shapes as
    `tiled_softmax_contrastive_loss`; returns the float32 scalar loss.
    """
    _check_embeds(image_embeds, text_embeds)
    batch = image_embeds.shape[0]
    b = _local_batch(batch, mesh)

    def per_device(x, y, scale):
        x, y = x.astype(jnp.float32), y.astype(jnp.float32)
        all_x = jax.lax.all_gather(x, BATCH_AXES, tiled=True)
        all_y = jax.lax.all_gather(y, BATCH_AXES, tiled=True)
        labels = jax.lax.axis_index(BATCH_AXES) * b + jnp.arange(b)
        image_to_text = optax.softmax_cross_entropy_with_integer_labels(scale * x @ all_y.T, labels)
        text_to_image = optax.softmax_cross_entropy_with_integer_labels(scale * y @ all_x.T, labels)
        return jax.lax.psum(jnp.sum(image_to_text) + jnp.sum(text_to_image), BATCH_AXES)

    total = jax.shard_map(per_device, mesh=mesh, in_specs=(ROWS, ROWS, SCALAR), out_specs=SCALAR)(
        image_embeds, text_embeds, jnp.asarray(logit_scale, jnp.float32))
    return 0.5 * total / batch
