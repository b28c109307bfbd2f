"""Reading ArrayRecord shards into a Beam pipeline and writing a shard's kept records, atomically.

    records = p | beam.Create(list(enumerate(paths))) | beam.FlatMap(shard_records)  # ((shard, pos), bytes)
    write_kept(path, out_dir, positions)    # OUT/NAME with the records at `positions`, written once

A shard is one work item (its records are read in order by the worker that holds it); the
output shard is written as OUT/NAME.partial and renamed, so an existing OUT/NAME is complete and
a restarted run leaves it alone (the same layout as `bigvl.inference.shard_transform`).
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

from bigvl.data.records import read_records, write_records


def shard_records(item: tuple[int, str]) -> Iterator[tuple[tuple[int, int], bytes]]:
    """(shard index, path) → ((shard index, position), record bytes) for every record of the shard."""
    shard, path = item
    for position, data in enumerate(read_records(path)):
        yield (shard, position), data


def output_path(path: str, out_dir: str) -> str:
    """Where the curated copy of input shard `path` goes: OUT/<its file name>."""
    return os.path.join(out_dir, os.path.basename(path))


def write_kept(path: str, out_dir: str, positions: Sequence[int]) -> bool:
    """Writes OUT/NAME with the records of `path` at `positions` (in input order); False (nothing
    written) when OUT/NAME is already there from an earlier run."""
    target = output_path(path, out_dir)
    if os.path.exists(target):
        return False
    keep = set(positions)
    write_records(target + ".partial", (data for i, data in enumerate(read_records(path)) if i in keep))
    os.replace(target + ".partial", target)
    return True
