"""Reading a compiled program: its collectives (from the HLO text) and a roofline step-time estimate.

Used by `python -m bigvl.plan` on programs compiled for a TPU topology without the TPU. Both
are estimates from the program alone, not measurements:

- `hlo_collectives`: every all-gather / all-reduce / reduce-scatter / all-to-all /
  collective-permute instruction of the optimized HLO, with the bytes of its full (unsharded
  side) array and its group size. TPU XLA fuses a gradient's all-reduce + slice into an
  `all-reduce-scatter` fusion: its all-reduce is counted as a reduce-scatter. Counts are
  static: an instruction inside a loop body (scanned layers, gradient accumulation) counts
  once, so the bytes of a scanned model are a lower bound.
- `roofline`: compute time = FLOPs / peak, memory time = bytes accessed / HBM bandwidth,
  collective time = ring-algorithm bytes each chip sends / ICI bandwidth; the step takes at
  least the largest of the three (perfect overlap) and at most their sum (none).
"""
from __future__ import annotations

import math
import re

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4,
               "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1}
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+("
                          + "|".join(COLLECTIVES) + r")(-start)?\((.*)$")
_ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")


def array_bytes(shape_text: str) -> list[int]:
    """Bytes of each array in an HLO shape like `(f32[16,128]{1,0}, bf16[4]{0})`."""
    out = []
    for dtype, dims in _ARRAY.findall(shape_text):
        out.append(DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d))
    return out


def group_size(attributes: str, num_devices: int) -> int:
    """Devices per replica group of a collective, from its `replica_groups=` attribute.

    Forms: `{{0,1,2,3},...}`, iota `[G,n]<=[...]`, and TPU's `mesh['axis_0'=4,...] {'axis_0'}`;
    anything else (or none, = all devices) → `num_devices`.
    """
    if m := re.search(r"replica_groups=\{\{([\d,\s]*)\}", attributes):
        return len([x for x in m.group(1).split(",") if x.strip()])
    if m := re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attributes):
        return int(m.group(2))
    if m := re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attributes):
        sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
        return math.prod(int(sizes.get(a, 1)) for a in re.findall(r"'(\w+)'", m.group(2)))
    if m := re.search(r"source_target_pairs=\{(.*?)\}\}", attributes):  # collective-permute
        return 2
    return num_devices


def hlo_collectives(hlo_text: str, num_devices: int) -> dict[str, dict]:
    """{kind: {count, bytes, sent_bytes}} over the collectives of an optimized HLO module.

    bytes: the full array each moves (all-gather: its output; all-reduce / reduce-scatter:
    its input; all-to-all / permute: its buffer), summed; sent_bytes: what one chip sends
    with ring algorithms (all-gather, reduce-scatter: (g-1)/g · bytes; all-reduce:
    2 (g-1)/g · bytes; all-to-all: (g-1)/g · bytes; permute: bytes), g = group size.
    """
    out: dict[str, dict] = {}
    computation = ""
    for line in hlo_text.splitlines():
        if m := _COMPUTATION.match(line):
            computation = m.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        shape, kind, start, rest = m.groups()
        sizes = array_bytes(shape)
        if not sizes:
            continue
        # *-start ops return (operands..., outputs...): all-gather's output is its largest array.
        nbytes = max(sizes) if start and kind in ("all-gather", "collective-permute") else sum(sizes)
        if start and kind == "all-reduce" and len(sizes) > 1:
            nbytes = sum(sizes) // 2 if len(sizes) % 2 == 0 else sum(sizes)
        if kind == "all-reduce" and computation.startswith("all-reduce-scatter"):
            kind = "reduce-scatter"
        g = group_size(rest, num_devices)
        factor = {"all-gather": (g - 1) / g, "reduce-scatter": (g - 1) / g, "all-reduce": 2 * (g - 1) / g,
                  "all-to-all": (g - 1) / g, "collective-permute": 1.0}[kind]
        entry = out.setdefault(kind, {"count": 0, "bytes": 0, "sent_bytes": 0.0})
        entry["count"] += 1
        entry["bytes"] += nbytes
        entry["sent_bytes"] += factor * nbytes
    return out


def roofline(flops: float, bytes_accessed: float, sent_bytes: float, chip) -> dict[str, float]:
    """Step-time bounds (s) per chip from FLOPs, HBM bytes and ICI bytes sent, and a `Chip`'s rates.

    {compute_s, memory_s, collective_s, step_s_overlapped (max of the three), step_s_serial (their
    sum)}: an estimate, not a measurement (no latency, no fusion limits, ICI links assumed busy).
    """
    compute, memory, ici = flops / chip.peak_flops, bytes_accessed / chip.hbm_bw, sent_bytes / chip.ici_bw
    return {"compute_s": compute, "memory_s": memory, "collective_s": ici,
            "step_s_overlapped": max(compute, memory, ici), "step_s_serial": compute + memory + ici}
