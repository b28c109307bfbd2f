"""The open_clip side of the loader benchmark: open_clip's own webdataset training loader over tars.

    VENV/bin/python open_clip_wds_loader.py --tars A.tar::B.tar --samples 2048 --batch 64 \
        --workers 2 --warmup 2 --batches 20

Runs in a venv with torch + open_clip_torch (its `open_clip_train` package) + webdataset, no
bigvl, no JAX. Builds `open_clip_train.data.get_wds_dataset` exactly as open_clip's training
does (detshuffle → split_by_node/worker → tarfile_to_samples → shuffle → decode pilrgb →
rename jpg/txt → image_transform(224, is_train=True) + the ViT-B-16 CLIP BPE tokenizer →
batched) with `--workers` DataLoader processes, skips `--warmup` batches (worker start-up,
shuffle-buffer fill), times the next `--batches`, and prints {"pairs_per_s": ..., "pairs_per_cpu_s":
...} (pairs per CPU second of this process and its workers, from /proc).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import types


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process `root` (default: this one) and its
    live descendants, from /proc (Linux): the loaders' cost, whatever else loads the machine."""
    root = os.getpid() if root is None else root
    parents, used = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(name)] = int(fields[1])
        used[int(name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(used.get(p, 0.0) for p in tree)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tars", required=True, help="'::'-separated tar paths")
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    # torch and open_clip only here: loader_side_by_side imports tree_cpu_seconds without them
    import open_clip
    import open_clip_train.data as ocd
    import torch

    # webdataset ≥ 1.0 ends each shard with an end-of-shard marker (a dict without "fname") that
    # open_clip's grouping (written for webdataset 0.2, its pinned version) does not expect; drop it.
    group = ocd.group_by_keys_nothrow
    ocd.group_by_keys_nothrow = lambda data, *a, **k: group((s for s in data if "fname" in s), *a, **k)
    torch.set_num_threads(1)
    args = types.SimpleNamespace(train_data=a.tars, train_num_samples=a.samples, dataset_resampled=False,
                                 train_data_upsampling_factors=None, seed=0, batch_size=a.batch,
                                 workers=a.workers, world_size=1, distributed=False)
    data = ocd.get_wds_dataset(args, open_clip.image_transform(a.size, is_train=True), True,
                           tokenizer=open_clip.get_tokenizer("ViT-B-16"))
    batches = iter(data.dataloader)
    for _ in range(a.warmup):
        images, texts = next(batches)
    start, cpu = time.perf_counter(), tree_cpu_seconds()
    for _ in range(a.batches):
        images, texts = next(batches)
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds() - cpu
    print(json.dumps({"pairs_per_s": a.batch * a.batches / seconds, "seconds": seconds,
                      "pairs_per_cpu_s": a.batch * a.batches / cpu,
                      "image": f"{images.dtype} {list(images.shape)}", "tokens": f"{texts.dtype} {list(texts.shape)}",
                      "torch": torch.__version__, "open_clip": open_clip.__version__}), flush=True)


if __name__ == "__main__":
    main()
