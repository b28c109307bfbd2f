"""Metrics out: TensorBoard event files, a JSONL file, and a readable console line."""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

from tensorboardX import SummaryWriter
from tqdm import tqdm


class MetricsWriter:
    """Writes scalars per step to `workdir/tb` and `workdir/metrics.jsonl` (host 0 only)."""

    def __init__(self, workdir: str, enabled: bool = True, purge_step: int | None = None):
        """purge_step: TensorBoard hides this run's earlier events at steps ≥ it (a resumed run
        passes its restored step + 1, so steps trained again are not shown twice)."""
        self.enabled = enabled
        if enabled:
            self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=purge_step)
            self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, metrics: Mapping[str, float], console: bool = True) -> None:
        if not self.enabled:
            return
        for key, value in metrics.items():
            self.tb.add_scalar(key, value, step)
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self.jsonl.flush()
        if console:
            tqdm.write(format_line(step, metrics))

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
            self.jsonl.close()


def format_line(step: int, metrics: Mapping[str, float]) -> str:
    """'step 100 | loss 3.2100 | lr 1.0e-04 ...' with compact numbers."""
    parts = [f"step {step}"]
    for key, value in metrics.items():
        text = f"{value:.3e}" if (abs(value) < 1e-3 or abs(value) >= 1e5) and value != 0 else f"{value:.4g}"
        parts.append(f"{key} {text}")
    return " | ".join(parts)


def read_metrics(workdir: str) -> list[dict]:
    """All records of `workdir/metrics.jsonl`, in order (later records win on resume)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
