"""Writing a transformed copy of ArrayRecord shards, one output shard per input shard, resumably.

    stats = transform_shards(paths, out_dir, transform, state="recaption")

`transform(path) -> (records: list[bytes], stats: dict)` makes one shard's output. Each
output shard is written as OUT/NAME.partial and renamed to OUT/NAME when complete; its
stats go to OUT/.STATE/NAME.json first (also written under a temporary name), so an
existing OUT/NAME always has its stats. A restarted run skips every shard already in
place (reading its stats back), so a run killed at any point and restarted ends with the
same files as an uninterrupted one, provided `transform` is deterministic. With several
processes, process p handles input shards i with i % process_count == p (each host
writes its own shards).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Sequence

from bigvl.data.records import write_records


def stats_path(out_dir: str, state: str, name: str) -> str:
    """Where the stats of output shard `name` live (OUT/.STATE/NAME.json)."""
    return os.path.join(out_dir, f".{state}", name + ".json")


def _write_json_atomic(path: str, value) -> None:
    with open(path + ".partial", "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(path + ".partial", path)


def my_shards(paths: Sequence[str], process_index: int = 0, process_count: int = 1) -> list[str]:
    """The input shards this process handles: index i with i % process_count == process_index."""
    return [p for i, p in enumerate(paths) if i % process_count == process_index]


def check_names(paths: Sequence[str]) -> None:
    """Raises ValueError when two input shards share a file name (their outputs would collide)."""
    seen: dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if name in seen:
            raise ValueError(f"input shards {seen[name]!r} and {path!r} have the same file name {name!r}: "
                             "outputs are written shard for shard under the input's name")
        seen[name] = path


def transform_shards(paths: Sequence[str], out_dir: str, transform: Callable[[str], tuple[list[bytes], dict]],
                     state: str, process_index: int = 0, process_count: int = 1,
                     on_skip: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Writes OUT/NAME for each of this process's input shards; returns {name: stats} of those shards.

    Shards whose OUT/NAME exists are not transformed again (their stored stats are
    returned, and `on_skip(name, stats)` is called, e.g. to advance a progress bar).
    A leftover NAME.partial of a killed run is overwritten.
    """
    check_names(paths)
    os.makedirs(os.path.join(out_dir, f".{state}"), exist_ok=True)
    results = {}
    for path in my_shards(paths, process_index, process_count):
        name = os.path.basename(path)
        target = os.path.join(out_dir, name)
        meta = stats_path(out_dir, state, name)
        if os.path.exists(target) and os.path.exists(meta):
            with open(meta) as f:
                results[name] = json.load(f)
            if on_skip is not None:
                on_skip(name, results[name])
            continue
        records, stats = transform(path)
        stats = {"input": os.path.abspath(path), "process": process_index, **stats}
        _write_json_atomic(meta, stats)
        write_records(target + ".partial", records)
        os.replace(target + ".partial", target)
        results[name] = stats
    return results


def read_all_stats(paths: Sequence[str], out_dir: str, state: str) -> dict[str, dict]:
    """{name: stats} of every input shard's finished output (all processes'); KeyError naming a missing one."""
    results = {}
    for path in paths:
        name = os.path.basename(path)
        meta = stats_path(out_dir, state, name)
        if not (os.path.exists(meta) and os.path.exists(os.path.join(out_dir, name))):
            raise KeyError(f"{os.path.join(out_dir, name)} is not finished (no output or no {meta})")
        with open(meta) as f:
            results[name] = json.load(f)
    return results
