"""The device mesh, the logical-axis sharding rules, and moving host batches onto the mesh.

One mesh with three named axes — `data`, `fsdp`, `tensor` — and one table of rules that
maps the logical axis names carried by parameters and activations (`embed`, `mlp`,
`batch`, ...) to mesh axes. A mesh axis of size 1 means "replicated", so the same
`DEFAULT_RULES` give data parallelism, FSDP, or FSDP + tensor parallelism by the mesh
shape alone; `PRESETS` names the three shapes.

All meshes here use Auto axis types: flax linen's logical partitioning expects them,
while `jax.make_mesh` defaults to Explicit.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the mesh axes a [B, ...] batch is split over

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Logical axis name -> mesh axis (or axes, or None = replicated).
DEFAULT_RULES: Rules = (
    # Parameters.
    ("embed", "fsdp"),  # model width: FSDP shards every weight matrix along it
    ("mlp", "tensor"),  # MLP hidden width
    ("heads", "tensor"),  # attention heads
    ("kv", None),  # per-head width
    ("vocab", "tensor"),  # token embedding rows
    ("pos", None),  # positional embedding positions
    ("patch", None),  # flattened patch pixels of the patch embedding
    ("proj", None),  # output width of the projection heads
    ("layers", None),  # leading layer axis of scanned (stacked) encoder blocks: every device holds all layers
    # Activations.
    ("batch", BATCH_AXES),
    ("seq", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
)

# Ready-made parallelism styles for configs: `c.mesh = PRESETS[name]["mesh"]`,
# `c.sharding_rules = [list(r) for r in PRESETS[name]["rules"]]`.
#   dp       every device holds all params; the batch is split over all devices.
#   fsdp     params, grads and optimizer state are split over all devices along `embed`;
#            the batch is split over all devices too (ZeRO-3 style).
#   fsdp_tp  as fsdp, plus MLP / heads / vocab split over a `tensor` axis of 2 devices
#            (raise `tensor` for wider models; it must divide the device count).
PRESETS: dict[str, dict[str, Any]] = {
    "dp": {"mesh": {"data": -1, "fsdp": 1, "tensor": 1}, "rules": DEFAULT_RULES},
    "fsdp": {"mesh": {"data": 1, "fsdp": -1, "tensor": 1}, "rules": DEFAULT_RULES},
    "fsdp_tp": {"mesh": {"data": 1, "fsdp": -1, "tensor": 2}, "rules": DEFAULT_RULES},
}


def _describe(shape: Mapping[str, int]) -> str:
    return " x ".join(f"{name}={size}" for name, size in shape.items())


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Resolves a config like {"data": -1, "fsdp": 2} (missing axes = 1, one -1 = the rest)
    to concrete sizes for every axis in MESH_AXES whose product is `num_devices`."""
    cfg = dict(mesh_cfg)
    for name in cfg:
        if name not in MESH_AXES:
            raise ValueError(f"mesh axis {name!r} unknown; axes are {', '.join(MESH_AXES)}")
    shape = {name: int(cfg.get(name, 1)) for name in MESH_AXES}
    wildcards = [name for name, size in shape.items() if size == -1]
    if len(wildcards) > 1:
        raise ValueError(f"mesh {_describe(shape)} has more than one -1 axis ({', '.join(wildcards)})")
    bad = [name for name, size in shape.items() if size < 1 and size != -1]
    if bad:
        raise ValueError(f"mesh {_describe(shape)}: axis {bad[0]!r} must be a positive size or -1")
    fixed = math.prod(size for size in shape.values() if size != -1)
    if wildcards:
        if num_devices % fixed:
            raise ValueError(f"mesh {_describe(shape)}: the fixed axes ({fixed} devices) do not divide "
                             f"the {num_devices} available devices")
        shape[wildcards[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(f"mesh {_describe(shape)} = {fixed} does not equal the {num_devices} "
                         "available devices")
    return shape


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A Mesh over `devices` (default: all) with axes MESH_AXES and Auto axis types.

    mesh_cfg: {axis: size}, e.g. {"data": -1, "fsdp": 1, "tensor": 1}; a missing axis is
    1, at most one -1 takes all remaining devices. Raises ValueError on a bad shape.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    return jax.make_mesh(tuple(shape.values()), MESH_AXES,
                         axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def rules_from_config(rules_list: Sequence[Sequence[Any]]) -> Rules:
    """Config rules ([[logical, mesh_axis | [mesh_axes] | None], ...]) -> the tuple form flax
    wants. Raises ValueError naming a malformed rule or an unknown mesh axis."""
    rules = []
    for rule in rules_list:
        if isinstance(rule, str) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"sharding rule {rule!r} must be "
                             "[logical_name, mesh_axis or [mesh_axes] or None]")
        logical, target = rule
        if isinstance(target, (list, tuple)):
            target = tuple(target)
        names = target if isinstance(target, tuple) else () if target is None else (target,)
        for name in names:
            if name not in MESH_AXES:
                raise ValueError(f"sharding rule {logical!r}: mesh axis {name!r} unknown; "
                                 f"axes are {', '.join(MESH_AXES)}")
        rules.append((logical, target))
    return tuple(rules)


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a tree from `jax.eval_shape(model.init, ...)`.

    Leaves boxed in `nn.LogicallyPartitioned` are sharded by their logical names through
    `rules`; unboxed leaves and logical names without a rule are replicated. The result
    has the structure of the *unboxed* tree (use it with `unbox`ed params).
    """
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_tree), mesh, rules)


def unbox(tree: Any) -> Any:
    """Strips `nn.LogicallyPartitioned` boxes, leaving plain arrays (params as pytrees)."""
    return nn.meta.unbox(tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a [B, ...] array: B split over ('data', 'fsdp'), the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of an array held whole on every device."""
    return NamedSharding(mesh, P())


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
    """Raises ValueError unless `global_batch` splits evenly over the batch axes and hosts."""
    shards = math.prod(mesh.shape[name] for name in BATCH_AXES)
    if global_batch % shards:
        raise ValueError(f"batch_size {global_batch} is not divisible by data x fsdp = {shards} "
                         f"(mesh {_describe(mesh.shape)})")
    if global_batch % jax.process_count():
        raise ValueError(f"batch_size {global_batch} is not divisible by the {jax.process_count()} hosts")


def host_local_to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-host batches {name: [B / hosts, ...]} -> global arrays {name: [B, ...]} sharded by
    `batch_sharding(mesh)`. On one process this is a sharded device_put."""
    sharding = batch_sharding(mesh)
    return {name: jax.make_array_from_process_local_data(sharding, np.asarray(x))
            for name, x in batch.items()}
