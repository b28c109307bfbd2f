"""Input pipeline speed per worker: JPEG decode + random resized crop + tokenize, pairs/s.

    python -m benchmarks.input_pipeline [--dir /tmp/bigvl_jpegs] [--num 256] [--size 256]
        [--crop 224] [--context 77] [--repeats 3]

Writes `--num` JPEGs of `--size` px rendered from the built-in synthetic world (with their
long synthetic captions, `captions.jsonl`) to `--dir` unless they are there already, and a
sentencepiece tokenizer trained on those captions. Then it times bigvl's own per-example
path, `bigvl.data.pipeline.ExampleProcessor` (the function grain maps over records: msgpack
record → caption strategy → JPEG decode → random resized crop → tokenize), on records built
from those files, in this one process on one thread (what one grain worker does). Images
come out uint8 [crop, crop, 3] (normalised on the accelerator), tokens int32 [1, context].

Prints one JSON line and a readable line. `benchmarks.open_clip_compare` runs
open_clip's transform + tokenizer over the same files for the side-by-side ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

from bigvl.config import base_config
from bigvl.data.pipeline import ExampleProcessor
from bigvl.data.records import encode_example
from bigvl.data.tokenizer import train_tokenizer
from bigvl.data.world import long_caption, render_scene, sample_scene


def make_jpegs(directory: str, num: int, size: int, seed: int = 0, quality: int = 90) -> list[dict]:
    """Writes NNNNN.jpg (synthetic-world scenes at `size` px, JPEG 4:2:0) and captions.jsonl
    ({file, caption: long caption, alt}) to `directory`, reusing them when already there."""
    index = os.path.join(directory, "captions.jsonl")
    if os.path.isfile(index):
        with open(index) as f:
            items = [json.loads(line) for line in f]
        if len(items) == num and Image.open(os.path.join(directory, items[0]["file"])).size == (size, size):
            return items
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(num):
        scene = sample_scene(rng, int(rng.integers(1, 4)))
        name = f"{i:05d}.jpg"
        Image.fromarray(render_scene(scene, size)).save(os.path.join(directory, name), quality=quality)
        caption = long_caption(scene, rng)
        items.append({"file": name, "caption": caption, "alt": caption.split(".")[0]})
    with open(index, "w") as f:
        f.writelines(json.dumps(it) + "\n" for it in items)
    return items


def ensure_tokenizer(directory: str, items: list[dict], vocab_size: int = 1024) -> str:
    """A sentencepiece model trained on the captions of `items` (DIR/tokenizer.model)."""
    path = os.path.join(directory, "tokenizer.model")
    if not os.path.isfile(path):
        train_tokenizer([it["caption"] for it in items], os.path.join(directory, "tokenizer"), vocab_size)
    return path


def bigvl_pairs_per_s(directory: str, items: list[dict], crop: int, context: int, repeats: int,
                      min_crop_scale: float = 0.9) -> dict:
    """Times `ExampleProcessor` over records holding the JPEGs of `items`; best of `repeats`."""
    data_cfg = base_config().data
    data_cfg.update(caption_strategy="recap", caption_field="long", min_crop_scale=min_crop_scale)
    processor = ExampleProcessor(data_cfg, crop, context, ensure_tokenizer(directory, items))
    records = []
    for i, it in enumerate(items):
        with open(os.path.join(directory, it["file"]), "rb") as f:
            records.append(encode_example({"id": str(i), "image": f.read(), "alt_text": it["alt"],
                                           "captions": {"long": it["caption"]}}))
    best = float("inf")
    for _ in range(repeats):
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        examples = [processor((i, record), rng) for i, record in enumerate(records)]
        best = min(best, time.perf_counter() - start)
    if not records or any(e is None for e in examples):
        raise RuntimeError("no benchmark records, or some were skipped as faulty")
    example = examples[-1]
    return {"benchmark": "input_pipeline", "impl": "bigvl", "pairs_per_s": len(records) / best,
            "num": len(records), "seconds": best, "image_shape": list(example["image"].shape),
            "image_dtype": str(example["image"].dtype), "tokens_shape": list(example["tokens"].shape),
            "crop": crop, "min_crop_scale": min_crop_scale, "context": context}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/bigvl_jpegs", help="where the JPEGs are (or go)")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--size", type=int, default=256, help="JPEG side, px")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--context", type=int, default=77, help="token sequence length")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the files (best kept)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    items = make_jpegs(args.dir, args.num, args.size)
    record = bigvl_pairs_per_s(args.dir, items, args.crop, args.context, args.repeats)
    print(json.dumps(record), flush=True)
    print(f"bigvl ExampleProcessor: {record['pairs_per_s']:.1f} pairs/s on one thread "
          f"({args.num} JPEGs of {args.size} px → {args.crop} px crops + {args.context} tokens)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
