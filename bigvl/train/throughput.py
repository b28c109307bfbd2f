"""Step time, pairs/s and MFU of the train loop, measured between log lines."""
from __future__ import annotations

import time

import jax


class Throughput:
    """Times the steps since the last `restart` (after the first step's compilation, after each
    log line and evaluation), so neither compilation nor evaluation counts.

    flops_per_pair: model FLOPs of one training pair (bigvl.models.flops); peak: the device's
    peak FLOP/s (None: no MFU); devices: how many share the batch.
    """

    def __init__(self, batch_size: int, flops_per_pair: float, peak: float | None, devices: int):
        self.batch_size, self.flops_per_pair, self.peak, self.devices = batch_size, flops_per_pair, peak, devices
        self.step, self.time = None, None

    @property
    def started(self) -> bool:
        return self.time is not None

    def restart(self, step: int, wait_for=None) -> None:
        """Start timing after `step` (after `wait_for`, e.g. its metrics, is ready)."""
        if wait_for is not None:
            jax.block_until_ready(wait_for)
        self.step, self.time = step, time.perf_counter()

    def measure(self, step: int) -> dict[str, float]:
        """{step_time_s, pairs_per_s, model_tflops_per_s, mfu?} since the last restart; {} if none."""
        now, steps = time.perf_counter(), step - self.step
        metrics = {}
        if steps > 0:
            elapsed = now - self.time
            pairs_per_s = steps * self.batch_size / elapsed
            metrics = {"step_time_s": elapsed / steps, "pairs_per_s": pairs_per_s,
                       "model_tflops_per_s": pairs_per_s * self.flops_per_pair / 1e12}
            if self.peak:
                metrics["mfu"] = pairs_per_s * self.flops_per_pair / (self.peak * self.devices)
        return metrics
