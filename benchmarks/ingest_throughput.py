"""Conversion throughput, records/s per core: the Beam pipeline (DirectRunner) beside the old process pool.

    python -m benchmarks.ingest_throughput [--dir /tmp/bigvl_conversion] [--shards 4] [--per_shard 128]
        [--size 512] [--max_side 256] [--workers 1,2] [--repeats 1]

The fixture of benchmarks/conversion.py (a fake img2dataset download, `--shards` tars of
`--per_shard` JPEGs of `--size` px, a Recap-DataComp-style table joined on url), converted with
--max_side into a fresh directory by each of:
- pool: `convert.convert_all` (the table loaded whole, forked workers);
- beam: `pipeline.plan_build` + `run_build` (DirectRunner: in_memory for 1 worker, multi_processing
  otherwise), the command's own code path;
- beam_no_table: the same pipeline without the table (no key pass, no join): what the join costs;
- beam_empty: a pipeline converting nothing (every unit already done): the runner's fixed cost.
records/s per core = records / wall seconds / workers. One JSON line per (mode, workers); shards
of pool and beam compared byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import time

from benchmarks.conversion import prepare
from bigvl.data.ingest.beam_io import pipeline_options
from bigvl.data.ingest.convert import ConvertOptions, convert_all
from bigvl.data.ingest.inputs import find_units
from bigvl.data.ingest.pipeline import plan_build, run_build
from bigvl.data.ingest.tables import TableSpec, load_table


def digest(out: pathlib.Path) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(out)):
        if name.endswith(".array_record"):
            h.update(name.encode() + (out / name).read_bytes())
    return h.hexdigest()


def convert(directory: pathlib.Path, mode: str, max_side: int, workers: int) -> tuple[float, int, pathlib.Path]:
    """(wall seconds, records written by this run, output directory) of one conversion."""
    # beam_empty reruns beam's finished output directory: every unit done, nothing converted
    out = directory / f"out_{'beam' if mode == 'beam_empty' else mode}_{workers}"
    units = find_units([str(directory / "dl" / "*.tar")], 10000)
    specs = [] if mode == "beam_no_table" else [TableSpec.parse(str(directory / "recap.parquet"), "url",
                                                                ["short=re_caption"])]
    options = ConvertOptions(out=str(out), max_side=max_side)
    if mode != "beam_empty":
        shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if mode == "pool":
        manifest = convert_all(units, [load_table(s) for s in specs], options, workers=workers, log=lambda m: None)
        written = manifest["written"]
    else:
        plan = plan_build(units, specs, None, options, log=lambda m: None)
        manifest = run_build(plan, pipeline_options([], workers), log=lambda m: None)
        written = 0 if mode == "beam_empty" else manifest["written"]
    return time.perf_counter() - start, written, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/tmp/bigvl_conversion")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--per_shard", type=int, default=128)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--max_side", type=int, default=256)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--modes", default="pool,beam,beam_no_table,beam_empty")
    args = p.parse_args(argv)
    directory = pathlib.Path(args.dir)
    prepare(directory, args.shards, args.per_shard, args.size)
    digests = {}
    # the forking pool runs first: a pool forked after this process has converted in-process (ArrayRecord's
    # and Beam's native threads) lost its workers here and hung (multiprocessing.Pool waits for them forever)
    for mode in args.modes.split(","):
        for workers in sorted({int(w) for w in args.workers.split(",")}, reverse=True):
            seconds, records, out = convert(directory, mode, args.max_side, workers)
            digests[mode, workers] = digest(out)
            record = {"benchmark": "ingest_throughput", "mode": mode, "workers": workers, "records": records,
                      "seconds": round(seconds, 2), "records_per_s": round(records / seconds, 1) if records else None,
                      "records_per_s_per_core": round(records / seconds / workers, 1) if records else None,
                      "same_bytes_as_pool": (digests[mode, workers] == digests.get(("pool", workers))
                                             if mode in ("pool", "beam") else None),
                      "image_px": args.size, "max_side": args.max_side, "per_shard": args.per_shard,
                      "shards": args.shards, "load_average": [round(x, 2) for x in os.getloadavg()],
                      "cores": os.cpu_count()}
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
