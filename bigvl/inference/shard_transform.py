"""Writing a transformed copy of ArrayRecord shards, one output shard per input shard, resumably.

    stats = transform_shards(paths, out_dir, transform, state="recaption", options={"seed": 0, ...})

`transform(path) -> (records: list[bytes], stats: dict)` makes one shard's output. Each
output shard is written as OUT/NAME.partial and renamed to OUT/NAME when complete; its
stats go to OUT/.STATE/NAME.json first (also written under a temporary name), so an
existing OUT/NAME always has its stats. A restarted run skips every shard already in
place (reading its stats back), so a run killed at any point and restarted ends with the
same shards (OUT/NAME, byte for byte) as an uninterrupted one, provided `transform` is
deterministic; the stats files are not byte-identical (they hold wall times). With several
processes, process p handles input shards i with i % process_count == p (each host
writes its own shards).

`options` is everything besides the input that decides the bytes of an output shard (the
model's identity, `run_identity`, the fields, decode settings, seed...). The first run
stores it in OUT/.STATE/options.json; a restart whose options differ stops with
`OptionsMismatch`, one line naming each differing option (old → new), before writing
anything, instead of mixing two runs' shards under one label (`check_options`). An OUT
written before options were recorded is adopted with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Callable, Sequence

from flax.traverse_util import flatten_dict

from bigvl.data.records import write_records
from bigvl.parallel.storage import is_url, run_path, write_text

log = logging.getLogger(__name__)

OPTIONS = "options.json"  # OUT/.STATE/options.json: the options the output was made with


class OptionsMismatch(ValueError):
    """OUT holds the output of a run with other options (one line: the options, old → new, and what to do)."""


def stats_path(out_dir: str, state: str, name: str) -> str:
    """Where the stats of output shard `name` live (OUT/.STATE/NAME.json)."""
    return os.path.join(out_dir, f".{state}", name + ".json")


def _write_json_atomic(path: str, value) -> None:
    with open(path + ".partial", "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(path + ".partial", path)


def options_path(out_dir: str, state: str) -> str:
    """Where the options of the run writing OUT live (OUT/.STATE/options.json)."""
    return os.path.join(out_dir, f".{state}", OPTIONS)


def run_identity(run, workdir: str = "") -> dict:
    """What identifies a loaded run's weights: {kind, step, config_sha256}; not its path (a moved workdir
    resumes). config_sha256: of `workdir/config.json`'s bytes where there is one, else of the run's
    config as sorted JSON (a run built in memory); the first 16 hex digits."""
    path = os.path.join(workdir, "config.json") if workdir else ""
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
    else:
        data = json.dumps(run.config.to_dict(), sort_keys=True, default=str).encode()
    return {"kind": run.config.model.kind, "step": int(run.step),
            "config_sha256": hashlib.sha256(data).hexdigest()[:16]}


def check_options(out_dir: str, state: str, options: dict, process_index: int = 0) -> None:
    """Stores `options` in OUT/.STATE/options.json on a fresh start; on a restart raises OptionsMismatch
    (and writes nothing) when the stored options differ. See the module docstring."""
    options = json.loads(json.dumps(options))  # as stored (tuples become lists)
    path = run_path(options_path(out_dir, state))  # OUT may be gs://: read and written through etils.epath
    if path.exists():
        old = json.loads(path.read_text())
        if old == options:
            return
        a, b = flatten_dict(old, sep="."), flatten_dict(options, sep=".")

        def show(values, key):
            return repr(values[key]) if key in values else "(none)"
        diff = [f"{k} {show(a, k)} → {show(b, k)}" for k in list(b) + [k for k in a if k not in b]
                if show(a, k) != show(b, k)]
        raise OptionsMismatch(f"{out_dir} holds {state} output made with other options: {'; '.join(diff)}. "
                              f"Rerun with the old options to resume, or pass a new --out "
                              f"(or delete {out_dir} to start over)")
    state_dir = path.parent
    if state_dir.is_dir() and any(p.name.endswith(".json") for p in state_dir.iterdir()):
        log.warning("%s: its finished shards were written without a record of their options (an older bigvl); "
                    "resuming as if they were made with this run's options", out_dir)
    text = json.dumps(options, indent=1, sort_keys=True)
    if is_url(path):  # a bucket stores the object whole on close
        write_text(path, text)
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    temporary = f"{path}.{process_index}.partial"  # several processes may share OUT: each its own name
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


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
                     on_skip: Callable[[str, dict], None] | None = None, *, options: dict) -> dict[str, dict]:
    """Writes OUT/NAME for each of this process's input shards; returns {name: stats} of those shards.

    Shards whose OUT/NAME exists are not transformed again (their stored stats are
    returned, and `on_skip(name, stats)` is called, e.g. to advance a progress bar).
    A leftover NAME.partial of a killed run is overwritten. OptionsMismatch (nothing
    written) when OUT was written with other `options` (`check_options`).
    """
    check_names(paths)
    check_options(out_dir, state, options, process_index)
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
