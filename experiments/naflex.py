"""NaFlex experiments on the wide/tall world variant (bigvl/data/world/aspect_variant.py).

    python -m experiments.naflex squash [--world DIR] [--out docs/results/naflex_squash.csv]
    python -m experiments.naflex study [--world DIR] [--steps 300] [--seeds 0,1,2] [--lengths 16,36,64]
    python -m experiments.naflex lengths --workdir workdirs/naflex/naflex_seed0 [--lengths 16,36,64]

`squash`: does resizing a wide or tall image to a square change what its shape looks like? For
each non-square one-object image of the variant's zero-shot split, the object's silhouette (pixels
within 60 of its colour) is matched against the five shapes' outlines (drawn by the world's own
inside-test at the object's stored radius and centroid, best rotation over ±36°), once in the image
as it is (aspect kept, as NaFlex patching keeps it) and once after a bilinear resize to a square of
the short side (the square recipe). It prints one JSON line per view: the template-matching shape
accuracy and the mean IoU of the true shape's outline, and writes them as CSV. No training: a
property of the images each recipe feeds the model.

`study`: the demo CLIP (configs/demo.py) on the variant, two recipes at equal compute (the same
steps, the same image tokens per step): `square` resizes every image to the demo's 32 px square
(64 patches; min_crop_scale 1, so a wide or tall image is squashed whole, and evaluated squashed:
model.image.resize 'squash'); `naflex` keeps the aspect ratio, trains over the length buckets
`--lengths` with tokens_per_step = batch 64 x 64 patches, evaluated at 64 patches. One row per run
(recipe, seed, the final metrics as in metrics.jsonl) → docs/results/naflex.csv.

`lengths`: one trained NaFlex run evaluated at several patch budgets (model.image.max_patches),
with the image tower's forward FLOPs per image at each → docs/results/naflex_lengths.csv and .png.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time

import numpy as np
from PIL import Image

from bigvl.data.records import decode_example, read_records
from bigvl.data.world.render import _shape_mask
from bigvl.data.world.scene import COLOURS, SHAPES

ROTATIONS = np.deg2rad(np.arange(-36, 37, 6))
CACHE = os.environ.get("BIGVL_CACHE", os.path.expanduser("~/.cache/bigvl"))
WORLD = os.path.join(CACHE, "synthetic_world_aspect_seed0")


def best_iou(mask: np.ndarray, shape: str, radius: float) -> float:
    """Max over ROTATIONS of the IoU of bool [H, W] `mask` with `shape`'s outline of `radius` px at its centroid."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    v = (np.arange(mask.shape[0]) + 0.5 - cy)[:, None] / radius
    u = (np.arange(mask.shape[1]) + 0.5 - cx)[None, :] / radius
    best = 0.0
    for rotation in ROTATIONS:
        outline = _shape_mask(shape, u, v, float(rotation))
        best = max(best, float((outline & mask).sum() / (outline | mask).sum()))
    return best


def silhouette(pixels: np.ndarray, colour: str) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.asarray(COLOURS[colour])).max(axis=-1) < 60


def squash_probe(world: str) -> dict[str, dict[str, float]]:
    """{view: {accuracy, true_shape_iou, n}} for view in (aspect_kept, squashed), non-square images only."""
    hits = {"aspect_kept": [], "squashed": []}
    ious = {"aspect_kept": [], "squashed": []}
    for data in read_records(os.path.join(world, "zeroshot.array_record")):
        record = decode_example(data)
        height, width = record["extras"]["aspect"]
        if height == width:
            continue
        obj = record["extras"]["scene"]["objects"][0]
        side = min(height, width)
        image = Image.open(io.BytesIO(record["image"])).convert("RGB")
        views = {"aspect_kept": image, "squashed": image.resize((side, side), Image.BILINEAR)}
        for view, im in views.items():
            mask = silhouette(np.asarray(im), obj["colour"])
            scores = {shape: best_iou(mask, shape, obj["radius"] * side) for shape in SHAPES}
            hits[view].append(max(scores, key=scores.get) == obj["shape"])
            ious[view].append(scores[obj["shape"]])
    return {view: {"accuracy": float(np.mean(hits[view])), "true_shape_iou": float(np.mean(ious[view])),
                   "n": len(hits[view])} for view in hits}


def study_config(world: str, recipe: str, seed: int, steps: int, lengths: list[int]):
    """The demo config on `world` for `recipe` (square | naflex) and `seed`, `steps` steps, one final evaluation."""
    from configs.demo import get_config, use_world  # experiments may read the shipped configs

    c = get_config()
    use_world(c, world)
    del c.evals["pointing"], c.evals["long_retrieval"]  # regions are square fractions; short captions suffice
    c.world.build = False
    c.seed, c.total_steps, c.eval_steps, c.ckpt_steps, c.report = seed, steps, 0, steps, False
    c.optim.warmup_steps = min(c.optim.warmup_steps, steps // 10)
    c.progress_bar = False
    if recipe == "square":
        c.data.min_crop_scale = 1.0  # the whole image, squashed to the square
        c.model.image.resize = "squash"
    elif recipe == "naflex":
        c.model.image.naflex = True
        c.data.naflex.lengths = list(lengths)
    else:
        raise ValueError(f"recipe {recipe!r}: square | naflex")
    return c


def run_study(world: str, steps: int, seeds: list[int], lengths: list[int], root: str, out: str) -> None:
    from bigvl.train.loop import train_and_evaluate  # the trainer: only the study needs it

    rows = []
    for seed in seeds:
        for recipe in ("square", "naflex"):
            workdir = os.path.join(root, f"{recipe}_seed{seed}")
            start = time.time()
            metrics = train_and_evaluate(study_config(world, recipe, seed, steps, lengths), workdir)
            rows.append({"recipe": recipe, "seed": seed, **{k: v for k, v in metrics.items() if k != "eval_time_s"}})
            print(json.dumps({**rows[-1], "wall_s": round(time.time() - start, 1),
                              "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)
            keys = ["recipe", "seed"] + sorted({k for r in rows for k in r} - {"recipe", "seed"})
            with open(out, "w", newline="") as f:  # rewritten after each run: a partial study is kept
                writer = csv.DictWriter(f, keys)
                writer.writeheader()
                writer.writerows(rows)


def image_forward_flops(image_cfg, length: int) -> int:
    """The image tower's forward FLOPs per image at `length` patch tokens: the blocks plus the patch embedding."""
    from bigvl.models import image_size_of
    from bigvl.models.flops import encoder_flops

    size = image_size_of(image_cfg)
    return encoder_flops(size, length) + 2 * length * 3 * size.patch_size ** 2 * size.width


def run_lengths(workdir: str, lengths: list[int], out: str) -> list[dict]:
    """The run in `workdir` evaluated at each patch budget in `lengths` (its config's evals) → CSV and PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bigvl.config import load_config_json
    from bigvl.evaluators import run_evals
    from bigvl.inference.run import load_run

    rows = []
    run = load_run(workdir, config=load_config_json(workdir))  # restored once; each length is a re-jit, not a reload
    for length in lengths:
        metrics = run_evals(run.encoder.with_length(length), run.config.evals)
        rows.append({"max_patches": length, "image_gflops": image_forward_flops(run.config.model.image, length) / 1e9,
                     **{k: v for k, v in metrics.items() if k != "eval_time_s"}})
        print(json.dumps(rows[-1]), flush=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = [r["image_gflops"] for r in rows]
    for key in ("zeroshot/top1", "hard_negatives/accuracy_swap_shape", "retrieval/t2i_r5"):
        ax.plot(x, [r[key] for r in rows], "o-", label=key)
    for r in rows:
        ax.annotate(f"L={r['max_patches']}", (r["image_gflops"], r["zeroshot/top1"]), fontsize=8)
    ax.set_xlabel("image tower forward GFLOPs per image")
    ax.set_ylabel("metric")
    ax.set_title("one NaFlex model at three sequence lengths")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out[:-len(".csv")] + ".png", dpi=120)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NaFlex experiments on the wide/tall world variant.")
    sub = parser.add_subparsers(dest="command", required=True)
    squash = sub.add_parser("squash", help="shape identity of non-square images, aspect kept vs squashed")
    squash.add_argument("--world", default=WORLD, help="a built aspect variant (build_aspect_world)")
    squash.add_argument("--out", default="docs/results/naflex_squash.csv")
    study = sub.add_parser("study", help="square vs naflex at equal compute, several seeds")
    study.add_argument("--world", default=WORLD)
    study.add_argument("--steps", type=int, default=300)
    study.add_argument("--seeds", default="0,1,2")
    study.add_argument("--lengths", default="16,36,64")
    study.add_argument("--root", default="workdirs/naflex")
    study.add_argument("--out", default="docs/results/naflex.csv")
    lengths = sub.add_parser("lengths", help="one NaFlex run evaluated at several sequence lengths")
    lengths.add_argument("--workdir", default="workdirs/naflex/naflex_seed0")
    lengths.add_argument("--lengths", default="16,36,64")
    lengths.add_argument("--out", default="docs/results/naflex_lengths.csv")
    args = parser.parse_args(argv)
    if args.command == "lengths":
        run_lengths(args.workdir, [int(x) for x in args.lengths.split(",")], args.out)
        return 0
    if args.command == "study":
        ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
        run_study(args.world, args.steps, ints(args.seeds), ints(args.lengths), args.root, args.out)
        return 0
    result = squash_probe(args.world)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["view", "accuracy", "true_shape_iou", "n"])
        for view, row in result.items():
            writer.writerow([view, f"{row['accuracy']:.4f}", f"{row['true_shape_iou']:.4f}", row["n"]])
            print(json.dumps({"view": view, **row}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
