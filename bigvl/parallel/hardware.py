"""Peak FLOP/s per device, for MFU (model FLOPs / time / peak).

Accelerators: the vendor's dense bf16 peak from `PEAK_BF16_FLOPS` (MFU is quoted against
it whatever the compute dtype, as is customary). CPUs have no table entry: `measured_peak`
times a large float32 matmul instead. `TPU_CHIPS`: per-chip HBM capacity, peak and bandwidths
for planning a pod without one (bigvl.plan).
"""
from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU chip's figures for planning (bigvl.plan): capacity and the three roofline rates.

    hbm_bytes: HBM a program may use per chip; peak_flops: dense bf16 FLOP/s; hbm_bw: HBM
    bytes/s; ici_bw: all-reduce bytes/s per chip (the pod's all-reduce bandwidth / chips,
    or the per-chip ICI figure where no pod figure is given); source: where they come from.
    """
    name: str
    hbm_bytes: float
    peak_flops: float
    hbm_bw: float
    ici_bw: float
    source: str


GiB, GB = 2 ** 30, 1e9
# Cloud TPU system-architecture pages (cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e}), read 2026-11.
TPU_CHIPS = {
    "v4": Chip("TPU v4", 32 * GiB, 275e12, 1200 * GB, 1.1e15 / 4096,
               "cloud.google.com/tpu/docs/v4: 32 GiB HBM2 at 1200 GBps, 275 TFLOP/s; ICI = the pod's "
               "1.1 PB/s all-reduce bandwidth / 4096 chips"),
    "v5e": Chip("TPU v5 lite", 16 * GiB, 197e12, 819 * GB, 51.2e12 / 256,
                "cloud.google.com/tpu/docs/v5e: 16 GB HBM2 at 819 GBps, 197 TFLOP/s; ICI = 51.2 TB/s "
                "all-reduce per pod / 256 chips (= the 1600 Gbps per chip)"),
    "v5p": Chip("TPU v5", 95 * GiB, 459e12, 2765 * GB, 4800e9 / 8,
                "cloud.google.com/tpu/docs/v5p: 95 GiB HBM2e at 2765 GBps, 459 TFLOP/s; ICI 4800 Gbps per chip"),
    "v6e": Chip("TPU v6 lite", 32 * GiB, 918e12, 1640 * GB, 102.4e12 / 256,
                "cloud.google.com/tpu/docs/v6e: 32 GB HBM at 1640 GBps, 918 TFLOP/s; ICI = 102.4 TB/s "
                "all-reduce per pod / 256 chips"),
}


def tpu_chip(topology: str) -> Chip:
    """The chip of a topology name like "v5e:16x16" or "v5p:4x4x4"; ValueError names the known ones."""
    generation = topology.split(":")[0].lower()
    if generation not in TPU_CHIPS:
        raise ValueError(f"topology {topology!r}: unknown TPU generation {generation!r}; "
                         f"known: {', '.join(TPU_CHIPS)} (e.g. v5e:2x2, v5p:4x4x4)")
    return TPU_CHIPS[generation]


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
