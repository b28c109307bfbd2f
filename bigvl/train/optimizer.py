"""The optimizer: optax AdamW with warmup + cosine/rsqrt, a weight-decay mask, clipping; frozen params
(`optim.frozen` / `optim.trainable`, bigvl/train/freeze.py) and layer-wise LR decay (`optim.layer_decay`)."""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigvl.models import param_path
from bigvl.models.transformer import SCANNED_BLOCKS, per_layer_ndim
from bigvl.train.freeze import FROZEN, TRAIN, freezing_enabled, param_labels

TOWERS = ("image", "text")


def make_schedule(optim_cfg, total_steps: int) -> optax.Schedule:
    """Learning rate per step: linear warmup, then cosine to end_lr_frac·lr, rsqrt, or constant."""
    lr, warmup = optim_cfg.lr, optim_cfg.warmup_steps
    if optim_cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup, max(total_steps, warmup + 1), end_value=lr * optim_cfg.end_lr_frac)
    if optim_cfg.schedule == "rsqrt":
        # join_schedules hands the second schedule the steps since the boundary.
        decay = lambda since: lr * jax.lax.rsqrt((since + max(warmup, 1.0)) / max(warmup, 1.0))  # noqa: E731
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
                                [warmup])


def decay_mask(params, no_decay_patterns) -> dict:
    """True where weight decay applies: params of ≥ 2 dims (per layer: a scanned encoder's stacked
    layer axis does not count, so its LayerNorm scales stay undecayed) not matching a no-decay regex.

    Paths are '/'-joined module names, e.g. 'image/block_3/mlp/Dense_0/kernel'.
    """
    regexes = [re.compile(p) for p in no_decay_patterns]

    def keep(path, leaf) -> bool:
        name = param_path(path)
        return per_layer_ndim(name, leaf.ndim) >= 2 and not any(r.fullmatch(name) for r in regexes)

    return jax.tree_util.tree_map_with_path(keep, params)


def freeze_rows(path_regex: str, num_rows: int) -> optax.GradientTransformation:
    """Zeroes the updates of the first `num_rows` rows of params whose '/'-joined path matches.

    Put last in the optimizer chain (after weight decay) so those rows never change.
    """
    pattern = re.compile(path_regex)

    def update(updates, state, params=None):
        def mask(path, u):
            if u is None or u.ndim < 1 or not pattern.fullmatch(param_path(path)):
                return u
            return u.at[:num_rows].set(jnp.zeros_like(u[:num_rows]))
        return jax.tree_util.tree_map_with_path(mask, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clamp_log_logit_scale(params: dict, max_logit_scale: float, name: str = "log_logit_scale") -> dict:
    """params with the top-level scalar `name` clamped to ≤ log(max_logit_scale) (> 0; else unchanged):
    open_clip's in-place `logit_scale.clamp_(0, log 100)` after each update (upper side). Applied to
    the updated params, not as an optax transformation, so the optimizer state keeps its layout;
    a param at or under the cap passes bit for bit."""
    if max_logit_scale <= 0 or name not in params:
        return params
    return {**params, name: jnp.minimum(params[name], jnp.asarray(math.log(max_logit_scale), params[name].dtype))}


def tower_depths(params) -> dict[str, int]:
    """{tower: number of encoder blocks} for 'image' and 'text' (unrolled block_i or scanned blocks/)."""
    flat = [(param_path(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    depth = {}
    for tower in TOWERS:
        blocks = {name.split("/")[2] for name, _ in flat if name.startswith(f"{tower}/encoder/block_")}
        stacked = [leaf.shape[0] for name, leaf in flat if name.startswith(f"{tower}/encoder/{SCANNED_BLOCKS}/")]
        depth[tower] = stacked[0] if stacked else len(blocks)
    return depth


def layer_ids(params, depth: dict[str, int] | None = None) -> dict:
    """A tree like `params` of each param's layer in its tower (BEiT's layer-wise LR decay): 0 for a
    tower's embeddings (patch / token embedding, positions, class token, ln_pre, conv stem), i + 1 for
    encoder block i, depth + 1 for what follows the blocks (ln_final, MAP head); a scanned encoder's
    stacked params get an int array [depth, 1, ...] (1 … depth). Params outside the towers (the
    projections, the logit scale, a decoder): None. Paths: `param_path`. depth: `tower_depths(params)`
    where the caller has it already."""
    depth = tower_depths(params) if depth is None else depth

    def layer(path, leaf):
        parts = param_path(path).split("/")
        if parts[0] not in TOWERS or len(parts) < 2:
            return None
        top = depth[parts[0]] + 1
        if parts[1] == "encoder":
            if parts[2].startswith("block_"):
                return int(parts[2][len("block_"):]) + 1
            if parts[2] == SCANNED_BLOCKS:
                return np.arange(1, top).reshape((-1,) + (1,) * (len(leaf.shape) - 1))
            return top
        return top if parts[1] == "map_head" else 0

    return jax.tree_util.tree_map_with_path(layer, params)


def scale_by_layer_decay(decay: float) -> optax.GradientTransformation:
    """Multiplies each tower param's update by decay ** (depth + 1 − layer) (`layer_ids`): the top of a
    tower moves at the full learning rate, each block below at `decay` times the one above, the
    embeddings least. Params outside the towers are unchanged. After AdamW, so weight decay is scaled too."""
    def update(updates, state, params=None):
        depth = tower_depths(updates)
        ids = layer_ids(updates, depth)

        def scale(path, u, i):
            if i is None:
                return u
            factor = np.power(decay, depth[param_path(path).split("/")[0]] + 1 - np.asarray(i, np.float64))
            return u * jnp.asarray(factor, u.dtype)
        return jax.tree_util.tree_map_with_path(scale, updates, ids), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(optim_cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW (decoupled weight decay on the mask) after global-norm clipping.

    `optim_cfg.mu_dtype` 'bfloat16' stores Adam's first moment in bf16 (half its memory;
    big_vision's default for large runs); '' keeps the params' dtype. The second moment
    stays in the params' dtype. Frozen params (`optim.frozen` / `optim.trainable`) go to
    `optax.set_to_zero` through `optax.multi_transform`: no moments, no decay, no update; clipping
    sees the trainable gradients only. `optim.layer_decay` in (0, 1) scales the towers' updates
    layer by layer (`scale_by_layer_decay`); 0 or 1 = off.
    """
    schedule = make_schedule(optim_cfg, total_steps)
    parts = [optax.clip_by_global_norm(optim_cfg.clip_norm)] if optim_cfg.clip_norm > 0 else []
    parts.append(optax.adamw(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                             mu_dtype=optim_cfg.mu_dtype or None, weight_decay=optim_cfg.weight_decay,
                             mask=lambda p: decay_mask(p, optim_cfg.no_decay)))
    if freezing_enabled(optim_cfg):
        parts = [optax.multi_transform({TRAIN: optax.chain(*parts), FROZEN: optax.set_to_zero()},
                                       lambda p: param_labels(p, optim_cfg))]
    layer_decay = float(optim_cfg.get("layer_decay", 0.0))
    if not 0.0 <= layer_decay <= 1.0:
        raise ValueError(f"config key 'optim.layer_decay' must be in [0, 1] (0 = off), got {layer_decay}")
    if 0.0 < layer_decay < 1.0:
        parts.append(scale_by_layer_decay(layer_decay))
    if optim_cfg.freeze_text_positions > 0:  # Long-CLIP fine-tuning: keep the first rows as loaded
        parts.append(freeze_rows("text/pos_embedding", optim_cfg.freeze_text_positions))
    return optax.chain(*parts), schedule
