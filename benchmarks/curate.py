"""Curation throughput and peak memory: `bigvl curate` (balancing + score filter + near de-dup) on N records.

    python -m benchmarks.curate [--records 1000000] [--data /tmp/curate_bench] [--workers 1]
                                [--dedup near] [--allow-busy]

Writes N synthetic records once (--data, reused when it holds N): 16 px JPEG images (random
4 × 4 blocks, 1 % exact and 1 % near copies), alt-texts naming the world's class names (or
boilerplate), a stored clip_score. Then runs `bigvl.data.curate.pipeline.curate` in a child
process with the world's metadata list (t = N / 100), keep_top 0.7 and `--dedup`, and prints one
JSON line: records, wall seconds, the child's user + system CPU seconds, records/s (wall),
records per CPU-second (≈ records/s per core, less sensitive to other load), the child's peak
RSS (MiB), and the machine's load (benchmarks.machine_load).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from bigvl.data.curate.metaclip import read_metadata
from bigvl.data.records import encode_example, write_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METADATA = os.path.join(ROOT, "bigvl", "data", "curate", "world_metadata.txt")
SHARD = 50_000


def _jpeg(rng: np.random.Generator) -> bytes:
    small = rng.integers(0, 256, (4, 4, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((16, 16), Image.BILINEAR).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_input(directory: str, records: int) -> list[str]:
    """N records in shards of SHARD under `directory` (kept for the next run: DIR/records.json)."""
    done = os.path.join(directory, "records.json")
    names = [f"bench-{i:05d}.array_record" for i in range((records + SHARD - 1) // SHARD)]
    if os.path.exists(done) and json.load(open(done)) == {"records": records}:
        return [os.path.join(directory, n) for n in names]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    classes = read_metadata(METADATA)
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        out, previous = [], []
        for i in range(k * SHARD, min(records, (k + 1) * SHARD)):
            u = rng.random()
            image = previous[-1] if u < 0.01 and previous else _jpeg(rng)
            previous = [image]
            alt = "click here for more" if rng.random() < 0.3 else f"{classes[int(rng.zipf(1.5)) % 30]} clipart"
            out.append(encode_example({"id": f"b{i:08d}", "image": image, "alt_text": alt, "captions": {},
                                       "extras": {"clip_score": {"alt": float(rng.normal())}}}))
        write_records(os.path.join(directory, name), out)
    json.dump({"records": records}, open(done, "w"))
    return [os.path.join(directory, n) for n in names]


def child(args) -> None:
    """Runs curate once in this process; prints {wall_s, cpu_s, peak_rss_mib, kept}."""
    from bigvl.data.curate.options import CurateOptions
    from bigvl.data.curate.pipeline import curate
    paths = sorted(os.path.join(args.data, n) for n in os.listdir(args.data) if n.endswith(".array_record"))
    out = args.data.rstrip("/") + "_out"
    shutil.rmtree(out, ignore_errors=True)
    options = CurateOptions(entries=tuple(read_metadata(METADATA)), balance_t=max(1, args.records // 100),
                            keep_fraction=0.7, dedup=args.dedup)
    t0, c0 = time.perf_counter(), os.times()
    manifest = curate(paths, out, options, workers=args.workers)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) \
        + (c1.children_system - c0.children_system)
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak / 1024, "kept": manifest["kept"],
                      "records": manifest["records"], "dropped": manifest["dropped"]}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.curate", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--data", default="/tmp/curate_bench")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dedup", default="near", choices=("none", "exact", "near"))
    p.add_argument("--allow-busy", action="store_true", help="time on a loaded machine (flagged in the output)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from benchmarks.machine_load import LoadGate
    make_input(args.data, args.records)
    gate = LoadGate()
    before = gate.check(allow_busy=args.allow_busy)
    run = subprocess.run([sys.executable, "-m", "benchmarks.curate", "--child", "--records", str(args.records),
                          "--data", args.data, "--workers", str(args.workers), "--dedup", args.dedup],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps({"benchmark": "curate", "records": result["records"], "kept": result["kept"],
                      "dedup": args.dedup, "workers": args.workers, "wall_s": round(result["wall_s"], 1),
                      "cpu_s": round(result["cpu_s"], 1), "records_per_s": round(result["records"] / result["wall_s"]),
                      "records_per_cpu_s": round(result["records"] / result["cpu_s"]),
                      "peak_rss_mib": round(result["peak_rss_mib"]), **gate.finish(before)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
