"""Which examples each step consumed: `workdir/example_ids/host_<i>-of-<n>.txt` holds one line per
step for each host: the step, then the record ids of the host's b examples in batch order
(``12 907 33 ...``), flushed line by line. A resumed run rewrites the lines of the steps it
trains again (`bigvl.train.supersede`), so the log reads as that of an uninterrupted run."""
from __future__ import annotations

import os

import numpy as np
from etils import epath

from bigvl.parallel.storage import AppendLog, run_path

IDS_DIR = "example_ids"


def ids_path(workdir: str, host: int, hosts: int) -> epath.Path:
    """`workdir/example_ids/host_<host>-of-<hosts>.txt` (workdir local or a bucket: bigvl/parallel/storage.py)."""
    return run_path(workdir) / IDS_DIR / f"host_{host}-of-{hosts}.txt"


class ExampleIdsLog:
    """Appends one line per step, `step id id ...`, to this host's ids file (an `AppendLog`: line-buffered
    on a local disk; in a bucket uploaded every 30 s and on `flush`, which the trainer calls before each
    checkpoint)."""

    def __init__(self, workdir: str, host: int, hosts: int, enabled: bool = True):
        self.path = ids_path(workdir, host, hosts)
        self.enabled = enabled
        self._file = None
        if enabled:
            self._file = AppendLog(self.path)

    def write(self, step: int, ids: np.ndarray) -> None:
        """Logs the record ids int [b] that `step` consumed on this host."""
        if self._file is not None:
            self._file.write(f"{step} {' '.join(map(str, np.asarray(ids).tolist()))}\n")

    def flush(self) -> None:
        """Stores every line written so far."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ids(path: str | os.PathLike) -> list[tuple[int, list[int]]]:
    """[(step, [record id, ...]), ...] in file order (a local path or a URL)."""
    return [(int(parts[0]), [int(x) for x in parts[1:]])
            for parts in (line.split() for line in run_path(path).read_text().splitlines()) if parts]
