"""The run's metrics: written per step (`MetricsWriter`: TensorBoard event files in `workdir/tb`,
`workdir/metrics.jsonl`, a readable console line) and read back (`read_metrics`, and
`finished_metrics` for a run whose final evaluation is in `workdir/final_metrics.json`).
The workdir may be a bucket (`gs://...`, bigvl/parallel/storage.py): tensorboardX writes its
events there through google-cloud-storage, metrics.jsonl is an `AppendLog`."""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

from etils import epath
from tensorboardX import SummaryWriter
from tqdm import tqdm

from bigvl.parallel.storage import AppendLog, run_path

METRICS_FILE = "metrics.jsonl"  # one JSON object per line: {"step": ..., "time": ..., metric: value, ...}
TB_DIR = "tb"
FINAL_METRICS_FILE = "final_metrics.json"


def metrics_path(workdir: str, name: str = METRICS_FILE) -> epath.Path:
    """`workdir/<name>`: where this module's files (METRICS_FILE, TB_DIR, FINAL_METRICS_FILE) live."""
    return run_path(workdir) / name


class MetricsWriter:
    """Writes scalars per step to `workdir/tb` and `workdir/metrics.jsonl` (host 0 only)."""

    def __init__(self, workdir: str, enabled: bool = True, purge_step: int | None = None):
        """purge_step: TensorBoard hides this run's earlier events at steps ≥ it (a resumed run
        passes its restored step + 1, so steps trained again are not shown twice)."""
        self.enabled = enabled
        if enabled:
            self.tb = SummaryWriter(os.fspath(metrics_path(workdir, TB_DIR)), purge_step=purge_step)
            self.jsonl = AppendLog(metrics_path(workdir))

    def write(self, step: int, metrics: Mapping[str, float], console: bool = True) -> None:
        if not self.enabled:
            return
        for key, value in metrics.items():
            self.tb.add_scalar(key, value, step)
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        if console:
            tqdm.write(format_line(step, metrics))

    def flush(self) -> None:
        """Stores what was written so far (before a checkpoint: its steps' lines are then stored)."""
        if self.enabled:
            self.jsonl.flush()
            self.tb.flush()

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
    path = metrics_path(workdir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finished_metrics(workdir: str, total_steps: int) -> dict[str, float] | None:
    """The final evaluation of a run that finished (`final_metrics.json` at `total_steps`), else None."""
    try:
        final = json.loads(metrics_path(workdir, FINAL_METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if final.get("step") != total_steps:
        return None
    return {k: v for k, v in final.items() if k not in ("step", "num_params")}
