"""Conversion throughput of data/build_shards.py: records/s per core, with and without --max_side.

    python -m benchmarks.conversion [--dir /tmp/bigvl_conversion] [--shards 4]
        [--per_shard 128] [--size 512] [--max_side 256] [--workers 1]

Writes a fake img2dataset download (tests/helpers/fake_download.py: `--shards` tars of
`--per_shard` JPEGs of `--size` px, a Recap-DataComp-style table) unless it is there, then
times the real conversion (`bigvl.data.ingest.convert.convert_all`, one table joined on url)
into a fresh directory, once keeping the image bytes and once resizing to `--max_side`.
records/s per core = records / wall seconds / workers. Prints one JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import time

from bigvl.data.ingest.convert import ConvertOptions, convert_all
from bigvl.data.ingest.inputs import find_units
from bigvl.data.ingest.tables import TableSpec, load_table
from tests.helpers.fake_download import make_download, make_recap_table


def prepare(directory: pathlib.Path, shards: int, per_shard: int, size: int) -> None:
    stamp = directory / "download.json"
    want = {"shards": shards, "per_shard": per_shard, "size": size}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    shutil.rmtree(directory, ignore_errors=True)
    planted = make_download(directory / "dl", shards=shards, per_shard=per_shard, size=size, corrupt=(), failed=())
    make_recap_table(directory / "recap.parquet", planted)
    stamp.write_text(json.dumps(want))


def time_conversion(directory: pathlib.Path, max_side: int, workers: int) -> dict:
    out = directory / f"out_{max_side}"
    shutil.rmtree(out, ignore_errors=True)
    units = find_units([str(directory / "dl" / "*.tar")], 10000)
    tables = [load_table(TableSpec.parse(str(directory / "recap.parquet"), "url", ["short=re_caption"]))]
    start = time.perf_counter()
    manifest = convert_all(units, tables, ConvertOptions(out=str(out), max_side=max_side), workers=workers,
                           log=lambda m: None)
    seconds = time.perf_counter() - start
    in_bytes = sum(os.path.getsize(p) for p in (directory / "dl").glob("*.tar"))
    out_bytes = sum(os.path.getsize(out / n) for n in manifest["shards"])
    return {"records": manifest["written"], "seconds": round(seconds, 3), "workers": workers,
            "records_per_s": round(manifest["written"] / seconds, 1),
            "records_per_s_per_core": round(manifest["written"] / seconds / workers, 1),
            "input_mb": round(in_bytes / 1e6, 2), "output_mb": round(out_bytes / 1e6, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/tmp/bigvl_conversion")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--per_shard", type=int, default=128)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--max_side", type=int, default=256)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    directory = pathlib.Path(args.dir)
    prepare(directory, args.shards, args.per_shard, args.size)
    for max_side in (0, args.max_side):
        record = time_conversion(directory, max_side, args.workers)
        record.update(benchmark="conversion", image_px=args.size, max_side=max_side,
                      load_average=[round(x, 2) for x in os.getloadavg()], cores=os.cpu_count())
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
