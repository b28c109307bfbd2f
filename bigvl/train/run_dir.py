"""The run directory: what a run writes besides checkpoints, and the checks before it starts.

- Start-up checks (`check_workdir`): writable, and room on its disk, before anything compiles.
- Metrics out (`MetricsWriter`): TensorBoard event files, `metrics.jsonl`, a readable console line.
- Per-step logs that a resumed run must rewrite exactly: `workdir/example_ids/host_<i>-of-<n>.txt`
  holds one line per step for each host: the step, then the record ids of the host's b examples
  in batch order (``12 907 33 ...``), flushed line by line, so it shows which examples each step
  consumed. A run killed after its last checkpoint has already written log lines for steps it
  will train again on resume: `supersede_after(path, step)` moves every line whose step is later
  than the restored step to a side file (`NAME.superseded.EXT`, appended, never overwritten)
  before the resumed run writes its own; the logs then read as those of an uninterrupted run,
  and nothing written is lost.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Mapping, Sequence

import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm

IDS_DIR = "example_ids"


def ids_path(workdir: str, host: int, hosts: int) -> str:
    """`workdir/example_ids/host_<host>-of-<hosts>.txt`."""
    return os.path.join(workdir, IDS_DIR, f"host_{host}-of-{hosts}.txt")


def superseded_path(path: str) -> str:
    """`dir/NAME.EXT` → `dir/NAME.superseded.EXT`: where lines of steps trained again go."""
    root, ext = os.path.splitext(path)
    return f"{root}.superseded{ext}"


def _line_step(line: str) -> int | None:
    """The step a log line is about: the JSON `step` field, or a text line's first integer."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            return int(json.loads(text)["step"])
        except (ValueError, KeyError, TypeError):
            return None  # a half-written last line (killed mid-write): not a step
    head = text.split(maxsplit=1)[0]
    return int(head) if head.isdigit() else None


def _is_eval_row(line: str) -> bool:
    return line.lstrip().startswith("{") and '"eval_time_s"' in line


def supersede_after(path: str, step: int, evals_at_step: bool = False) -> int:
    """Moves the lines of `path` about steps > `step` (and torn lines) to `superseded_path(path)`;
    with `evals_at_step`, also the evaluation rows of `step` itself (a relaunch that will
    evaluate `step` again: the final evaluation of a run killed before it finished).

    Appends them to the side file (flushed and fsynced) before atomically replacing `path`
    by its kept lines, so a crash in between loses nothing. Returns the number moved;
    a missing file is 0.
    """
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.readlines()
    keep, moved = [], []
    for line in lines:
        line_step = _line_step(line)
        if line_step is not None and (line_step < step or line_step == step and not
                                      (evals_at_step and _is_eval_row(line))):
            keep.append(line)
        elif line.strip():
            moved.append(line if line.endswith("\n") else line + "\n")
    if not moved:
        return 0
    with open(superseded_path(path), "a") as f:
        f.writelines(moved)
        f.flush()
        os.fsync(f.fileno())
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(moved)


class ExampleIdsLog:
    """Appends one line per step, `step id id ...`, to this host's ids file (line-buffered)."""

    def __init__(self, workdir: str, host: int, hosts: int, enabled: bool = True):
        self.path = ids_path(workdir, host, hosts)
        self.enabled = enabled
        self._file = None
        if enabled:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._file = open(self.path, "a", buffering=1)

    def write(self, step: int, ids: np.ndarray) -> None:
        """Logs the record ids int [b] that `step` consumed on this host."""
        if self._file is not None:
            self._file.write(f"{step} {' '.join(map(str, np.asarray(ids).tolist()))}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ids(path: str) -> list[tuple[int, list[int]]]:
    """[(step, [record id, ...]), ...] in file order."""
    with open(path) as f:
        return [(int(parts[0]), [int(x) for x in parts[1:]])
                for parts in (line.split() for line in f) if parts]


def supersede_logs(workdir: str, step: int, host: int, hosts: int,
                   names: Sequence[str] = ("metrics.jsonl",), evals_at_step: bool = False) -> int:
    """`supersede_after(·, step, evals_at_step)` on this host's ids file and, on host 0, on `names`."""
    paths = [ids_path(workdir, host, hosts)]
    if host == 0:
        paths += [os.path.join(workdir, name) for name in names]
    return sum(supersede_after(path, step, evals_at_step) for path in paths)


def finished_metrics(workdir: str, total_steps: int) -> dict[str, float] | None:
    """The final evaluation of a run that finished (`final_metrics.json` at `total_steps`), else None."""
    path = os.path.join(workdir, "final_metrics.json")
    try:
        with open(path) as f:
            final = json.load(f)
    except (OSError, ValueError):
        return None
    if final.get("step") != total_steps:
        return None
    return {k: v for k, v in final.items() if k not in ("step", "num_params")}


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


def _nearest_existing(path: str) -> str:
    """`path` itself if it exists, else its nearest existing ancestor."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_workdir(workdir: str, min_free_bytes: int) -> None:
    """Raises ValueError (one line) unless `workdir` can be created and written, with room to spare.

    Probes the workdir, or where it does not exist yet its nearest existing parent, by
    creating and deleting a directory holding a file (so both `mkdir` and writing work
    there); then asks `shutil.disk_usage` for the free bytes of that disk: fewer than
    `min_free_bytes` (config key min_free_disk_gb) is an error. Leaves nothing behind.
    """
    existing = _nearest_existing(workdir)
    if not os.path.isdir(existing):
        raise ValueError(f"workdir {workdir}: cannot be created, {existing} is not a directory")
    try:
        probe = tempfile.mkdtemp(dir=existing, prefix=".bigvl-write-probe-")
        try:
            with open(os.path.join(probe, "probe"), "wb") as f:
                f.write(b"0")
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    except OSError as e:
        raise ValueError(f"workdir {workdir}: cannot write in {existing} ({e.strerror or e})") from e
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        raise ValueError(f"workdir {workdir}: only {_format_bytes(free)} free on its disk; need ≥ "
                         f"{_format_bytes(min_free_bytes)} (config key min_free_disk_gb)")
