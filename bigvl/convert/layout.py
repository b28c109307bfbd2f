"""Weight layouts as tables: one list of `Entry`s maps a foreign state dict onto bigvl's params and back.

An Entry ties bigvl param paths ('image/encoder/block_0/attn/qkv/kernel') to foreign keys
('visual.transformer.resblocks.0.attn.in_proj_weight') with a pair of exact functions (reshapes,
transposes, splits, concatenations: no arithmetic), so import and export come from the same
table and a round trip is bitwise. The helpers below build the usual entries; every format's
module (open_clip.py, hf.py, big_vision.py) only lists its names.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np

Arrays = tuple  # tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True)
class Entry:
    """paths (bigvl) ← to_bigvl(*foreign arrays); keys (foreign) ← from_bigvl(*bigvl arrays)."""
    paths: tuple[str, ...]
    keys: tuple[str, ...]
    to_bigvl: Callable[..., Arrays]
    from_bigvl: Callable[..., Arrays]


def copy(path: str, key: str, shape: Sequence[int] | None = None, key_shape: Sequence[int] | None = None) -> Entry:
    """The same values, reshaped to `shape` in bigvl and back to `key_shape` abroad (None: as is)."""
    return Entry((path,), (key,), lambda x: (x.reshape(shape) if shape is not None else x,),
                 lambda y: (y.reshape(key_shape) if key_shape is not None else y,))


def linear(path: str, key: str, shape: Sequence[int] | None = None, in_dims: int = 1) -> Entry:
    """A torch Linear weight [out, in] ↔ a flax kernel [*in, *out] (= weight.T reshaped to `shape`)."""
    def to(x):
        return (x.T.reshape(shape) if shape is not None else x.T,)

    def back(y):
        return (y.reshape(math.prod(y.shape[:in_dims]), -1).T,)
    return Entry((path,), (key,), to, back)


def linear_layer(prefix: str, key: str, bias: bool = True, kernel_shape=None, bias_shape=None,
                 in_dims: int = 1) -> list[Entry]:
    """A torch Linear `key`.{weight,bias} ↔ a flax Dense `prefix`/{kernel,bias}."""
    out = [linear(f"{prefix}/kernel", f"{key}.weight", kernel_shape, in_dims)]
    if bias:
        out.append(copy(f"{prefix}/bias", f"{key}.bias", bias_shape, (-1,)))
    return out


def layer_norm(prefix: str, key: str, scale: str = "weight", bias: str = "bias", sep: str = ".") -> list[Entry]:
    """A LayerNorm `key`.{weight,bias} ↔ `prefix`/{scale,bias}."""
    return [copy(f"{prefix}/scale", f"{key}{sep}{scale}"), copy(f"{prefix}/bias", f"{key}{sep}{bias}")]


def fused_rows(path: str, keys: Sequence[str], shape: Sequence[int], transpose: bool) -> Entry:
    """Several torch tensors stacked on their first axis (q, k, v weights [D, D] or biases [D])
    ↔ one bigvl array: concat(rows) (transposed when `transpose`) reshaped to `shape`."""
    n = len(keys)

    def to(*xs):
        x = np.concatenate(xs, axis=0)
        return ((x.T if transpose else x).reshape(shape),)

    def back(y):
        rows = y.reshape(y.shape[0], -1).T if transpose else y.reshape(-1)
        return tuple(np.split(rows, n, axis=0))
    return Entry((path,), tuple(keys), to, back)


def split_rows(paths: Sequence[str], key: str, shapes: Sequence[Sequence[int]], sizes: Sequence[int],
               transpose: bool) -> Entry:
    """One torch tensor whose first axis holds several bigvl arrays (MultiheadAttention's
    in_proj [3D, D] → q [D, H, K] and kv [D, 2, H, K]); `sizes` are the rows of each."""
    cuts = np.cumsum(sizes)[:-1]

    def to(x):
        parts = np.split(x, cuts, axis=0)
        return tuple((p.T if transpose else p).reshape(s) for p, s in zip(parts, shapes))

    def back(*ys):
        rows = [y.reshape(y.shape[0], -1).T if transpose else y.reshape(-1) for y in ys]
        return (np.concatenate(rows, axis=0),)
    return Entry(tuple(paths), (key,), to, back)


def stacked(path: str, keys: Sequence[str], shape: Sequence[int], key_shape: Sequence[int]) -> Entry:
    """Several foreign arrays of `key_shape` stacked on axis 1 (big_vision key/value kernels
    [D, H, K] → kv [D, 2, H, K]; biases [H, K] → [2, H, K] on axis 0)."""
    axis = 1 if len(key_shape) > 2 else 0

    def to(*xs):
        return (np.stack(xs, axis=axis).reshape(shape),)

    def back(y):
        return tuple(np.moveaxis(y, axis, 0).reshape((len(keys),) + tuple(key_shape)))
    return Entry((path,), tuple(keys), to, back)


def conv_patch(path: str, key: str, patch: int, channels: int, width: int, torch_layout: bool) -> Entry:
    """A patch conv kernel ↔ bigvl's patch_embedding kernel [P·P·C, D] (patch pixels row, col, channel).

    torch_layout: [D, C, P, P] (open_clip, HF); else HWIO [P, P, C, D] (big_vision)."""
    def to(x):
        hwio = x.transpose(2, 3, 1, 0) if torch_layout else x
        return (hwio.reshape(patch * patch * channels, width),)

    def back(y):
        hwio = y.reshape(patch, patch, channels, width)
        return (np.ascontiguousarray(hwio.transpose(3, 2, 0, 1)) if torch_layout else hwio,)
    return Entry((path,), (key,), to, back)


def safetensors_numpy():
    """`safetensors.numpy` (an optional dependency: the converters only), or one line saying how to get it."""
    try:
        import safetensors.numpy
    except ImportError:
        raise ValueError("reading/writing .safetensors needs the 'safetensors' package: "
                         "pip install 'bigvl[convert]'") from None
    return safetensors.numpy


def flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """{'a': {'b': x}} → {'a/b': x}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    """{'a/b': x} → {'a': {'b': x}}."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def to_bigvl(table: Sequence[Entry], source: Mapping[str, np.ndarray], what: str,
             ignore: Callable[[str], bool] = lambda key: False) -> dict[str, np.ndarray]:
    """Foreign flat dict → bigvl flat params {path: array}. Raises ValueError naming the first key
    the table needs and `source` lacks, or the keys of `source` no entry reads (unless `ignore`d)."""
    out, used = {}, set()
    for entry in table:
        missing = [k for k in entry.keys if k not in source]
        if missing:
            raise ValueError(f"{what}: key {missing[0]!r} is missing (needed for bigvl param {entry.paths[0]!r})")
        arrays = entry.to_bigvl(*(np.asarray(source[k]) for k in entry.keys))
        out.update({p: np.array(a, order="C") for p, a in zip(entry.paths, arrays)})
        used.update(entry.keys)
    unread = sorted(k for k in source if k not in used and not ignore(k))
    if unread:
        raise ValueError(f"{what}: {len(unread)} key(s) this layout does not know, e.g. {unread[:3]} "
                         f"(another architecture than the config inferred?)")
    return out


def from_bigvl(table: Sequence[Entry], params: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """bigvl flat params → foreign flat dict. Raises ValueError naming a param the table needs and
    `params` lacks, or a param no entry writes (the export would lose it)."""
    out, used = {}, set()
    for entry in table:
        missing = [p for p in entry.paths if p not in params]
        if missing:
            raise ValueError(f"{what}: bigvl param {missing[0]!r} is missing")
        arrays = entry.from_bigvl(*(np.asarray(params[p]) for p in entry.paths))
        out.update({k: np.array(a, order="C") for k, a in zip(entry.keys, arrays)})
        used.update(entry.paths)
    unwritten = sorted(p for p in params if p not in used)
    if unwritten:
        raise ValueError(f"{what}: bigvl params {unwritten[:3]} have no place in this format")
    return out
