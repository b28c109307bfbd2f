"""Starting from another run's params (fine-tuning), and adapting them to this model.

`adapt_params` maps a source params tree onto this model's (same paths and shapes), except
the text positional table, which may be shorter: Long-CLIP's way to fine-tune a short-context
text tower to a long context. `stretch_positions` turns a [L0, D] table into [L, D] by keeping
the first `keep` rows and stretching the rest r = (L - keep) / (L0 - keep) times by linear
interpolation (the last old row extrapolates along the last difference), e.g. 77 → 248 with
keep = 20, r = 4. The optimizer's `freeze_rows` keeps those first rows exactly as loaded during
fine-tuning (Long-CLIP trains only the stretched part).

It also converts between the two layouts of the towers' encoders (`model.scan_layers`):
unrolled `encoder/block_0` … `encoder/block_{L-1}` and scanned `encoder/blocks` with every
leaf stacked on a leading layer axis [L, ...] (`stack_layers` / `unstack_layers`), so a
scanned model fine-tunes from an unrolled run and back.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import jax
import numpy as np

from bigvl.models.param_tree import param_path
from bigvl.models.transformer import SCANNED_BLOCKS

ENCODER = "encoder"  # the towers' Encoder module name: only its blocks are scanned (not the decoder's)
_BLOCK = re.compile(r"block_(\d+)")


def stretch_positions(table: np.ndarray, new_length: int, keep: int = 20) -> np.ndarray:
    """[L0, D] → [new_length, D]: rows < keep copied, rows ≥ keep stretched r× (r an integer).

    For old row p = keep + i (i < L0 - keep - 1) and j in [0, r): new[keep + r·i + j] =
    (1 - j/r)·old[p] + (j/r)·old[p + 1]; the last old row q extrapolates: new[keep + r·(L0-keep-1) + j]
    = old[q] + (j/r)·(old[q] - old[q - 1]). Raises ValueError naming the sizes if r is not whole.
    """
    table = np.asarray(table)
    old_length = table.shape[0]
    if not 0 < keep < old_length - 1 or (new_length - keep) % (old_length - keep):
        raise ValueError(f"cannot stretch {old_length} positions to {new_length} keeping {keep}: "
                         f"(new - keep) must be a whole multiple of (old - keep)")
    ratio = (new_length - keep) // (old_length - keep)
    frac = (np.arange(ratio) / ratio)[:, None]  # [r, 1]
    rest = table[keep:].astype(np.float64)
    nxt = np.concatenate([rest[1:], 2 * rest[-1:] - rest[-2:-1]])  # last row: extrapolate
    stretched = (1 - frac)[None] * rest[:, None] + frac[None] * nxt[:, None]  # [L0-keep, r, D]
    out = np.concatenate([table[:keep].astype(np.float64), stretched.reshape(-1, table.shape[1])])
    return out.astype(table.dtype)


def _block_indices(node: Mapping) -> list[int]:
    """Sorted L of the `block_i` keys of an encoder's params; raises ValueError unless they are 0..L-1."""
    found = sorted(int(m.group(1)) for k in node if (m := _BLOCK.fullmatch(str(k))))
    if found != list(range(len(found))):
        raise ValueError(f"encoder blocks {found} are not block_0..block_{len(found) - 1}")
    return found


def stack_encoder(node: Mapping) -> dict:
    """One encoder's params, unrolled → scanned: {block_0..block_{L-1}, rest} → {blocks, rest}.

    Each leaf of `blocks` is np.stack of the L blocks' leaves: [L, ...] (host NumPy, values exact).
    A node without blocks comes back unchanged (as a dict).
    """
    indices = _block_indices(node)
    rest = {k: v for k, v in node.items() if not _BLOCK.fullmatch(str(k))}
    if not indices:
        return rest
    if SCANNED_BLOCKS in rest:
        raise ValueError(f"encoder params hold both block_i and {SCANNED_BLOCKS!r}")
    blocks = [node[f"block_{i}"] for i in indices]
    stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(jax.device_get(x)) for x in leaves]), *blocks)
    return {**rest, SCANNED_BLOCKS: stacked}


def unstack_encoder(node: Mapping) -> dict:
    """One encoder's params, scanned → unrolled: {blocks, rest} → {block_0..block_{L-1}, rest}.

    Leaf [L, ...] of `blocks` → leaf [...] of each `block_i` (host NumPy, values exact).
    A node without `blocks` comes back unchanged (as a dict).
    """
    if SCANNED_BLOCKS not in node:
        return dict(node)
    if _block_indices(node):
        raise ValueError(f"encoder params hold both block_i and {SCANNED_BLOCKS!r}")
    stacked = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), node[SCANNED_BLOCKS])
    depths = {leaf.shape[0] for leaf in jax.tree.leaves(stacked)}
    if len(depths) != 1:
        raise ValueError(f"stacked encoder leaves disagree on the layer count: {sorted(depths)}")
    rest = {k: v for k, v in node.items() if k != SCANNED_BLOCKS}
    return {**rest, **{f"block_{i}": jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(depths.pop())}}


def _map_encoders(params: Any, convert) -> Any:
    """`params` with `convert` applied to every dict named ENCODER (other subtrees as they were)."""
    if not isinstance(params, Mapping):
        return params
    return {k: convert(v) if k == ENCODER and isinstance(v, Mapping) else _map_encoders(v, convert)
            for k, v in params.items()}


def stack_layers(params: Any) -> Any:
    """A model's params, unrolled → scanned (`model.scan_layers` True): every `encoder/block_i`
    group becomes `encoder/blocks` with leaves [L, ...]. The decoder's blocks stay as they are."""
    return _map_encoders(params, stack_encoder)


def unstack_layers(params: Any) -> Any:
    """A model's params, scanned → unrolled: every `encoder/blocks` [L, ...] becomes
    `encoder/block_0` … `encoder/block_{L-1}`. Inverse of `stack_layers`."""
    return _map_encoders(params, unstack_encoder)


def match_layer_layout(source: Any, target: Any) -> Any:
    """`source` with each encoder converted to the layout (unrolled or scanned) of the same encoder
    in `target`; encoders already alike, and everything else, are left as they are."""
    if not isinstance(source, Mapping) or not isinstance(target, Mapping):
        return source
    out = {}
    for key, value in source.items():
        want = target.get(key)
        if key == ENCODER and isinstance(value, Mapping) and isinstance(want, Mapping):
            if SCANNED_BLOCKS in want and SCANNED_BLOCKS not in value:
                value = stack_encoder(value)
            elif SCANNED_BLOCKS in value and SCANNED_BLOCKS not in want:
                value = unstack_encoder(value)
        out[key] = match_layer_layout(value, want)
    return out


log = logging.getLogger(__name__)

TEXT_POSITIONS = "text/pos_embedding"


def adapt_params(source: dict, target: dict, stretch_keep: int = 20) -> dict:
    """`source` params reshaped onto the structure and shapes of `target` (arrays or ShapeDtypeStructs).

    Every target param must exist in the source with the same shape, except the text
    positional table, which may be shorter and is then stretched (long_context.stretch_positions).
    Encoders are first converted to the target's layout (`match_layer_layout`): a scanned model
    starts from an unrolled run and an unrolled one from a scanned run.
    Returns host NumPy arrays in the target dtypes. Raises ValueError naming the first
    param that is missing or does not fit.
    """
    source = match_layer_layout(source, target)
    flat_source = {param_path(p): v for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}

    def pick(path, want):
        name = param_path(path)
        if name not in flat_source:
            raise ValueError(f"init.workdir: param {name!r} is not in the source run")
        have = np.asarray(jax.device_get(flat_source[name]))
        if have.shape != tuple(want.shape):
            if name == TEXT_POSITIONS and have.ndim == 2 and have.shape[1] == want.shape[1]:
                log.info("stretching %s from %d to %d positions (first %d kept)", name, have.shape[0],
                         want.shape[0], stretch_keep)
                have = stretch_positions(have, want.shape[0], keep=stretch_keep)
            else:
                raise ValueError(f"init.workdir: param {name!r} has shape {have.shape} in the source "
                                 f"run but {tuple(want.shape)} here")
        return have.astype(want.dtype)

    return jax.tree_util.tree_map_with_path(pick, target)
