"""Running a jitted, batch-sharded function over a host-replicated input, one fixed-size chunk at a time.

    out = run_in_chunks(lambda batch, start: encode(params, batch), images, chunk=256, mesh=mesh)

Every host passes the same full input [N, ...] and gets the full output [N, ...] back. The
input is cut into chunks of `chunk` rows (a multiple of the mesh's batch shards); the last
chunk is padded by repeating its last row, so the function compiles for one shape only,
and the padding rows are dropped from the output. Each host puts its 1/hosts slice of a
chunk on its devices (`host_local_to_global`); with several hosts the sharded output is
gathered back onto every host.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from bigvl.parallel.mesh import host_local_to_global


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """x [n, ...] → [rows, ...], the last row repeated (n ≤ rows, n ≥ 1)."""
    return x if len(x) == rows else np.concatenate([x, np.repeat(x[-1:], rows - len(x), axis=0)])


def run_in_chunks(fn: Callable[[Any, int], Any], inputs: np.ndarray | Mapping[str, np.ndarray], chunk: int,
                  mesh: jax.sharding.Mesh) -> Any:
    """fn over `inputs` in chunks of `chunk` rows sharded over `mesh`'s batch axes; outputs concatenated.

    inputs: one array [N, ...] or a mapping {name: [N, ...]} (the same N); host-replicated numpy.
    fn(batch, start): batch has the structure of `inputs` with global jax arrays [chunk, ...]
    sharded by `batch_sharding(mesh)`; start is the index of the chunk's first row (e.g. to
    derive a per-chunk rng). It returns an array [chunk, ...] or a pytree of them.
    Returns numpy with fn's output structure, each leaf [N, ...] (padding rows dropped).
    Raises ValueError for an empty input.
    """
    named = isinstance(inputs, Mapping)
    arrays = {k: np.asarray(v) for k, v in inputs.items()} if named else {"x": np.asarray(inputs)}
    sizes = {len(v) for v in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"run_in_chunks: inputs of different lengths {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        raise ValueError("run_in_chunks: empty input")
    hosts, host = jax.process_count(), jax.process_index()
    lo, hi = host * chunk // hosts, (host + 1) * chunk // hosts  # this host's rows of a chunk
    outputs = []
    for start in range(0, n, chunk):
        local = {k: _pad_rows(v[start:start + chunk], chunk)[lo:hi] for k, v in arrays.items()}
        batch = host_local_to_global(local, mesh)
        out = fn(batch if named else batch["x"], start)
        if hosts > 1:
            out = multihost_utils.process_allgather(out, tiled=True)
        outputs.append(jax.tree.map(np.asarray, out))
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)
