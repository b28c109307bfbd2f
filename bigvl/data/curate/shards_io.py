"""Reading ArrayRecord shards into a Beam pipeline and writing a shard's kept records, once and atomically.

    records = p | beam.Create(list(enumerate(paths))) | beam.FlatMap(shard_records)  # ((shard, pos), bytes)
    write_kept(path, out_dir, positions)    # OUT/NAME with the records at `positions`, written once

A shard is one work item (its records are read in order by the worker that holds it). Files go
through the shard builder's Beam helpers (`bigvl.data.ingest.beam_io`: local paths or any Beam
filesystem such as gs://; a shard is written under a temporary name and renamed when complete),
so an existing OUT/NAME is complete and a restarted run leaves it alone.
"""
from __future__ import annotations

import posixpath
from typing import Iterator, Sequence

from bigvl.data.ingest.beam_io import exists, join, read_shard, write_shard


def shard_records(item: tuple[int, str]) -> Iterator[tuple[tuple[int, int], bytes]]:
    """(shard index, path) → ((shard index, position), record bytes) for every record of the shard."""
    shard, path = item
    for position, data in enumerate(read_shard(path)):
        yield (shard, position), data


def output_path(path: str, out_dir: str) -> str:
    """Where the curated copy of input shard `path` goes: OUT/<its file name>."""
    return join(out_dir, posixpath.basename(path))


def write_kept(path: str, out_dir: str, positions: Sequence[int]) -> bool:
    """Writes OUT/NAME with the records of `path` at `positions` (in input order); False (nothing
    written) when OUT/NAME is already there from an earlier run."""
    target = output_path(path, out_dir)
    if exists(target):
        return False
    keep = set(positions)
    write_shard((data for i, data in enumerate(read_shard(path)) if i in keep), target)
    return True
