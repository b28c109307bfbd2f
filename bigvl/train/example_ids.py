"""Which examples each step consumed: `workdir/example_ids/host_<i>-of-<n>.txt` holds one line per
step for each host: the step, then the record ids of the host's b examples in batch order
(``12 907 33 ...``), flushed line by line. A resumed run rewrites the lines of the steps it
trains again (`bigvl.train.supersede`), so the log reads as that of an uninterrupted run."""
from __future__ import annotations

import os

import numpy as np

IDS_DIR = "example_ids"


def ids_path(workdir: str, host: int, hosts: int) -> str:
    """`workdir/example_ids/host_<host>-of-<hosts>.txt`."""
    return os.path.join(workdir, IDS_DIR, f"host_{host}-of-{hosts}.txt")


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
