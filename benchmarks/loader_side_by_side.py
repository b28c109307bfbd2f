"""bigvl's grain loader over converted shards against open_clip's webdataset loader over the original tars.

    python -m benchmarks.loader_side_by_side --python /tmp/torchenv/bin/python \
        [--dir /tmp/bigvl_loader] [--shards 8] [--per_shard 256] [--size 256] [--batch 64] [--batches 20]

Writes a fake img2dataset download (`--shards` tars of `--per_shard` JPEGs of `--size` px,
tests/helpers/fake_download.py), converts it with the real data/build_shards.py path
(`convert_all`, images kept as they are) and trains a sentencepiece model on its alt-texts.
Then, for 1 and 2 loader worker processes, it times batches of `--batch` pairs, random crop of
area [0.9, 1] resized to 224 px + the caption tokenised to 77 tokens, on both sides:
- bigvl: `bigvl.data.pipeline.make_train_dataset` (grain, `data.num_workers` = workers,
  caption strategy `alt` = the tar's .txt) over the converted shards; uint8 images, bilinear.
- open_clip: `open_clip_wds_loader.py` in `--python`'s venv: `open_clip_train.data.get_wds_dataset`
  (DataLoader workers) over the tars; float32 normalised images, bicubic, CLIP BPE tokens.
Both skip `--warmup` batches (worker start-up) and time the next `--batches`, and the sides
alternate per worker count, so load from other processes hits both alike. Prints one JSON
line per worker count with `ratio` = bigvl / open_clip pairs/s (above 1: bigvl is faster) and
`cpu_ratio`, the same for pairs per CPU second of the loader's processes (from /proc: robust to
other load; bigvl's grain workers map with 2 threads each, open_clip's DataLoader workers with 1).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from benchmarks.open_clip_wds_loader import tree_cpu_seconds  # stdlib-only module (it also runs without bigvl)
from bigvl.config import base_config
from bigvl.data.ingest.convert import ConvertOptions, convert_all
from bigvl.data.ingest.inputs import find_units
from bigvl.data.ingest.texts import sample_texts
from bigvl.data.pipeline import make_train_dataset
from bigvl.data.tokenizer import train_tokenizer
from tests.helpers.fake_download import make_download

LOADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "open_clip_wds_loader.py")


def prepare(directory: pathlib.Path, shards: int, per_shard: int, size: int) -> None:
    """The download, its conversion (directory/bigvl) and a tokenizer, reused when already made."""
    stamp, want = directory / "made.json", {"shards": shards, "per_shard": per_shard, "size": size}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    shutil.rmtree(directory, ignore_errors=True)
    make_download(directory / "dl", shards=shards, per_shard=per_shard, size=size, corrupt=(), failed=())
    manifest = convert_all(find_units([str(directory / "dl" / "*.tar")], 10000), [],
                           ConvertOptions(out=str(directory / "bigvl")), log=lambda m: None)
    texts, _ = sample_texts([str(directory / "bigvl" / n) for n in manifest["shards"]], 10_000)
    train_tokenizer(texts, directory / "bigvl" / "tokenizer", 1024)
    stamp.write_text(json.dumps(want))


def bigvl_pairs_per_s(directory: pathlib.Path, workers: int, batch: int, warmup: int, batches: int) -> dict:
    """bigvl's training stream (`make_train_dataset`, `workers` grain processes) over the converted shards."""
    c = base_config()
    c.batch_size = batch
    c.data.train_paths = [str(directory / "bigvl" / "train-*.array_record")]
    c.data.tokenizer = str(directory / "bigvl" / "tokenizer.model")
    c.data.caption_strategy, c.data.min_crop_scale, c.data.num_workers = "alt", 0.9, workers
    c.model.image.image_size, c.model.text.context_length = 224, 77
    it = iter(make_train_dataset(c))
    for _ in range(warmup):
        out = next(it)
    start, cpu = time.perf_counter(), tree_cpu_seconds()
    for _ in range(batches):
        out = next(it)
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds() - cpu
    return {"pairs_per_s": batch * batches / seconds, "pairs_per_cpu_s": batch * batches / cpu,
            "image": f"{out['image'].dtype} {list(out['image'].shape)}",
            "tokens": f"{out['tokens'].dtype} {list(out['tokens'].shape)}"}


def open_clip_pairs_per_s(python: str, directory: pathlib.Path, workers: int, batch: int, warmup: int,
                          batches: int) -> dict:
    tars = sorted(glob.glob(str(directory / "dl" / "*.tar")))
    samples = (warmup + batches) * batch
    out = subprocess.run([python, LOADER, "--tars", "::".join(tars), "--samples", str(samples), "--batch", str(batch),
                          "--workers", str(workers), "--warmup", str(warmup), "--batches", str(batches)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", required=True, help="a venv's python with torch, open_clip_torch, webdataset")
    p.add_argument("--dir", default="/tmp/bigvl_loader")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--per_shard", type=int, default=256)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args(argv)
    directory = pathlib.Path(args.dir)
    prepare(directory, args.shards, args.per_shard, args.size)
    if (args.warmup + args.batches) * args.batch > args.shards * args.per_shard:
        p.error("--warmup + --batches batches need more samples than the download holds")
    for workers in (int(w) for w in args.workers.split(",")):
        ours = bigvl_pairs_per_s(directory, workers, args.batch, args.warmup, args.batches)
        theirs = open_clip_pairs_per_s(args.python, directory, workers, args.batch, args.warmup, args.batches)
        print(json.dumps({"benchmark": "loader_side_by_side", "workers": workers, "batch": args.batch,
                          "batches": args.batches, "image_px": args.size, "crop": 224, "context": 77,
                          "bigvl_pairs_per_s": round(ours["pairs_per_s"], 1),
                          "open_clip_pairs_per_s": round(theirs["pairs_per_s"], 1),
                          "ratio": round(ours["pairs_per_s"] / theirs["pairs_per_s"], 3),
                          "bigvl_pairs_per_cpu_s": round(ours["pairs_per_cpu_s"], 1),
                          "open_clip_pairs_per_cpu_s": round(theirs["pairs_per_cpu_s"], 1),
                          "cpu_ratio": round(ours["pairs_per_cpu_s"] / theirs["pairs_per_cpu_s"], 3),
                          "bigvl_output": f"{ours['image']} + {ours['tokens']}",
                          "open_clip_output": f"{theirs['image']} + {theirs['tokens']}",
                          "open_clip": theirs["open_clip"], "cores": os.cpu_count(),
                          "load_average": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
