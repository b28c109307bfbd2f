"""Peak dense bf16 FLOP/s per accelerator, for MFU (model FLOPs / time / peak)."""
from __future__ import annotations

import jax

# bf16 dense peak FLOP/s per chip (vendor figures).
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,  # v6e
    "TPU v6e": 918e12,
}


def peak_flops(device: jax.Device | None = None) -> float | None:
    """The peak for `device` (default: the first device) or None when unknown (e.g. CPU)."""
    kind = (device or jax.devices()[0]).device_kind
    for name in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_BF16_FLOPS[name]
    return None
