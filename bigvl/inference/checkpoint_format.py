"""The on-disk format of a bigvl checkpoint step, and its version.

A step directory `workdir/checkpoints/<step>/` holds orbax items:
    state/   the TrainState pytree (bigvl/train/state.py): params, opt_state, step, counters
    data/    the grain iterator position of each host
    meta/    {"format_version": N, "batch_size": B, "process_count": P} (JSON; absent in steps written
             before versioning = version 0; batch_size / process_count since elastic resume)

Versions: 0 = before versioning (same layout as 1); 1 = with `meta/`. A version this code
does not know fails with one line naming it and the supported ones, before any restore is
tried (it is not a corrupt checkpoint, and is never moved aside as one).
"""
from __future__ import annotations

import json
import os

from bigvl.parallel.storage import run_path

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (0, 1)
META_ITEM = "meta"


class CheckpointVersionError(RuntimeError):
    """A checkpoint written in a format this bigvl cannot restore."""


def format_version(step_dir: str | os.PathLike) -> int:
    """The format version of a checkpoint step directory (0 when it has no meta item).

    Raises ValueError when the meta item exists but cannot be read (a damaged step).
    """
    path = run_path(step_dir) / META_ITEM / "metadata"  # a local path or a URL
    if not path.parent.is_dir():
        return 0
    try:
        return int(json.loads(path.read_text())["format_version"])
    except (OSError, ValueError, KeyError, TypeError) as e:  # a half-written step: treated as corrupt
        raise ValueError(f"checkpoint {step_dir}: unreadable {META_ITEM}/metadata ({e})") from None


def check_format(step_dir: str | os.PathLike) -> int:
    """`format_version(step_dir)`; raises CheckpointVersionError when it is not supported."""
    version = format_version(step_dir)
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointVersionError(
            f"checkpoint {step_dir} has format version {version}; this bigvl restores versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    return version


def meta(**layout) -> dict:
    """What a new checkpoint records in its meta item: the format version, and `layout` (the
    trainer's global `batch_size` and `process_count`, checked on resume; absent before)."""
    return {"format_version": FORMAT_VERSION, **layout}


def read_meta(step_dir: str | os.PathLike) -> dict:
    """The meta item of a step ({} when it has none or it does not read)."""
    try:
        return dict(json.loads((run_path(step_dir) / META_ITEM / "metadata").read_text()))
    except (OSError, ValueError, TypeError):
        return {}
