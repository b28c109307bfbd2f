"""Per-step logs that a resumed run must rewrite exactly: consumed example ids, and lines
written after the checkpoint a run resumes from.

`workdir/example_ids/host_<i>-of-<n>.txt` holds one line per step for each host: the step,
then the record ids of the host's b examples in batch order (``12 907 33 ...``), flushed
line by line, so it shows which examples each step consumed.

A run killed after its last checkpoint has already written log lines for steps it will
train again on resume. `supersede_after(path, step)` moves every line whose step is
later than the restored step to a side file (`NAME.superseded.EXT`, appended, never
overwritten) before the resumed run writes its own: the logs then read as those of an
uninterrupted run, and nothing written is lost.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

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


def supersede_after(path: str, step: int) -> int:
    """Moves the lines of `path` about steps > `step` (and torn lines) to `superseded_path(path)`.

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
        if line_step is not None and line_step <= step:
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
                   names: Sequence[str] = ("metrics.jsonl",)) -> int:
    """`supersede_after(·, step)` on this host's ids file and, on host 0, on `names` in workdir."""
    paths = [ids_path(workdir, host, hosts)]
    if host == 0:
        paths += [os.path.join(workdir, name) for name in names]
    return sum(supersede_after(path, step) for path in paths)
