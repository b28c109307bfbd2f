"""Curation before training: MetaCLIP balancing, score filtering and image de-duplication, shards → shards.

`pipeline.curate` (the command is `bigvl curate`, bigvl/cli/curate.py) runs them as one Apache
Beam pipeline; `metaclip`, `dedup` and `options` hold the per-record logic, `shards_io` the reads
and atomic writes. The world's metadata list is `bigvl/data/curate/world_metadata.txt`.
"""
