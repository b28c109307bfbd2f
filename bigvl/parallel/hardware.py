"""Peak FLOP/s per device, for MFU (model FLOPs / time / peak).

Accelerators: the vendor's dense bf16 peak from `PEAK_BF16_FLOPS` (MFU is quoted against
it whatever the compute dtype, as is customary). CPUs have no table entry: `measured_peak`
times a large float32 matmul instead.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# bf16 dense peak FLOP/s per chip (vendor figures).
PEAK_BF16_FLOPS = {
    "H100": 989e12,  # SXM; device_kind e.g. "NVIDIA H100 80GB HBM3"
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


def measure_matmul_flops(device: jax.Device | None = None, size: int = 2048, repeats: int = 5,
                         dtype=jnp.float32) -> float:
    """FLOP/s of the best of `repeats` [size,size] @ [size,size] matmuls on `device` (default: the first).

    On the CPU one device's matmul already uses every core (XLA's intra-op thread pool is
    shared by all simulated CPU devices of the process), so this is the whole machine's rate.
    """
    device = device or jax.devices()[0]
    a = jax.device_put(jax.random.normal(jax.random.key(0), (size, size), dtype), device)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, a))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, a))
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def measured_peak(num_devices: int) -> tuple[float | None, str]:
    """(peak FLOP/s per device, where it came from) for MFU over `num_devices` devices.

    Accelerators: the table (None when the kind is unknown). CPU: the measured float32
    matmul rate of the machine divided by `num_devices`, since simulated CPU devices share
    the same cores.
    """
    device = jax.devices()[0]
    if device.platform != "cpu":
        peak = peak_flops(device)
        return peak, f"table: {device.device_kind} dense bf16" if peak else f"unknown kind {device.device_kind!r}"
    size = 2048
    rate = measure_matmul_flops(device, size=size)
    return rate / num_devices, (f"measured: {size}^3 float32 matmul on the CPU = {rate / 1e9:.1f} GFLOP/s "
                                f"for the whole machine, / {num_devices} device(s)")
