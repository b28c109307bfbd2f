"""Peak memory of build_shards against the caption table's size: the Beam pipeline beside the old pool.

    python -m benchmarks.ingest_memory [--dir /tmp/bigvl_ingest_memory] [--rows 1000000,10000000]
        [--images 10000] [--per_shard 1000] [--workers 2] [--modes pool,beam]

Writes a fake img2dataset download of `--images` small JPEGs (tests/helpers/fake_download.py)
and, per row count, a Recap-DataComp-style parquet caption table keyed by url holding a row for
every image plus rows no image has (1M rows per row group, as pyarrow writes them). Then runs
each conversion in a child process (`--workers` processes, the same table joined on url) and
samples the resident memory of every process of its tree every 50 ms (psutil):
- pool: `convert_all` with `load_table` (the table loaded into a dict, then forked workers);
- beam: `python data/build_shards.py` (DirectRunner, one process per worker).
Prints one JSON line per (mode, rows): peak RSS of the main process and of the largest other
process (MB), the sum of the per-process peaks, records written, wall seconds, the load average.
The shards of both modes are compared byte for byte ("same_bytes").
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from benchmarks.ingest_throughput import digest

REPO = pathlib.Path(__file__).resolve().parents[1]

POOL = """
import sys
from bigvl.data.ingest.convert import ConvertOptions, convert_all
from bigvl.data.ingest.inputs import find_units
from bigvl.data.ingest.tables import TableSpec, load_table
d, table, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tables = [load_table(TableSpec.parse(table, "url", ["short=re_caption"]))]
convert_all(find_units([d + "/dl/*.tar"], 10000), tables, ConvertOptions(out=out), workers=workers, log=lambda m: None)
"""


def prepare(directory: pathlib.Path, images: int, per_shard: int, rows: list[int]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.fake_download import make_download
    stamp = directory / "download.json"
    want = {"images": images, "per_shard": per_shard}
    if not (stamp.exists() and json.loads(stamp.read_text()) == want):
        shutil.rmtree(directory, ignore_errors=True)
        make_download(directory / "dl", shards=images // per_shard, per_shard=per_shard, size=32, corrupt=(), failed=())
        stamp.write_text(json.dumps(want))
    for n in rows:
        path = directory / f"table_{n}.parquet"
        if path.exists():
            continue
        # image i has url http://example.com/img/{i}.jpg; rows past the images are urls no image has
        ids = range(n)
        table = pa.table({"url": pa.array([f"http://example.com/img/{i}.jpg" for i in ids]),
                          "re_caption": pa.array([f"a recaptioned photo number {i} with several more words" for i in ids])})
        pq.write_table(table, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)


def run_sampled(cmd: list[str], env: dict) -> dict:
    """Runs `cmd`; the peak RSS (MB) of each process of its tree, sampled every 50 ms."""
    import psutil
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0.0), p.memory_info().rss / 2 ** 20)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    err = proc.stderr.read().decode()
    if proc.wait() != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-2000:]}")
    main = peaks.pop(proc.pid, 0.0)
    return {"seconds": round(time.perf_counter() - start, 1), "main_peak_mb": round(main),
            "other_peak_mb": round(max(peaks.values(), default=0.0)), "processes": 1 + len(peaks),
            "sum_of_peaks_mb": round(main + sum(peaks.values()))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/tmp/bigvl_ingest_memory")
    p.add_argument("--rows", default="1000000,10000000")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--per_shard", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modes", default="pool,beam")
    args = p.parse_args(argv)
    directory = pathlib.Path(args.dir)
    rows = [int(r) for r in args.rows.split(",")]
    if min(rows) < args.images:
        p.error("--rows must each be ≥ --images (every image has its row)")
    prepare(directory, args.images, args.per_shard, rows)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for n in rows:
        table = str(directory / f"table_{n}.parquet")
        digests = {}
        for mode in args.modes.split(","):
            out = directory / f"out_{mode}_{n}"
            shutil.rmtree(out, ignore_errors=True)
            if mode == "pool":
                cmd = [sys.executable, "-c", POOL, str(directory), table, str(out), str(args.workers)]
            else:
                cmd = [sys.executable, str(REPO / "data" / "build_shards.py"), "--images", str(directory / "dl" / "*.tar"),
                       "--out", str(out), "--captions", table, "--join", "url", "--caption", "short=re_caption",
                       "--workers", str(args.workers)]
            record = run_sampled(cmd, env)
            manifest = json.loads((out / "manifest.json").read_text())
            digests[mode] = digest(out)
            record.update(benchmark="ingest_memory", mode=mode, table_rows=n, images=args.images,
                          workers=args.workers, written=manifest["written"], joined=manifest["tables"][0]["joined"],
                          same_bytes=len(set(digests.values())) == 1,
                          load_average=[round(x, 2) for x in os.getloadavg()], cores=os.cpu_count())
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
