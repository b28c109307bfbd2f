"""The supersede rule: per-step logs that a resumed run must rewrite exactly.

A run killed after its last checkpoint has already written log lines for steps it will train
again on resume: `supersede_after(path, step)` moves every line whose step is later than the
restored step to a side file (`NAME.superseded.EXT`, appended, never overwritten) before the
resumed run writes its own; the logs (`metrics.jsonl`, the example-id logs) then read as those
of an uninterrupted run, and nothing written is lost.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

from etils import epath

from bigvl.parallel.storage import is_url, run_path, write_text
from bigvl.train.example_ids import ids_path
from bigvl.train.metrics_log import METRICS_FILE, metrics_path


def superseded_path(path: str | os.PathLike) -> epath.Path:
    """`dir/NAME.EXT` → `dir/NAME.superseded.EXT`: where lines of steps trained again go."""
    path = run_path(path)
    return path.with_name(f"{path.stem}.superseded{path.suffix}")


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
    a missing file is 0. In a bucket (`gs://`) each file is one object, rewritten whole
    (the side file first).
    """
    path = run_path(path)
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
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
    side = superseded_path(path)
    if is_url(path):  # objects are written whole: side file = its old text + the moved lines
        write_text(side, (side.read_text() if side.exists() else "") + "".join(moved))
    else:
        with open(side, "a") as f:
            f.writelines(moved)
            f.flush()
            os.fsync(f.fileno())
    write_text(path, "".join(line if line.endswith("\n") else line + "\n" for line in keep))
    return len(moved)


def supersede_logs(workdir: str, step: int, host: int, hosts: int,
                   names: Sequence[str] = (METRICS_FILE,), evals_at_step: bool = False) -> int:
    """`supersede_after(·, step, evals_at_step)` on this host's ids file and, on host 0, on `names`
    (files in `workdir`)."""
    paths = [ids_path(workdir, host, hosts)]
    if host == 0:
        paths += [metrics_path(workdir, name) for name in names]
    return sum(supersede_after(path, step, evals_at_step) for path in paths)
