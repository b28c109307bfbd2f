"""NaFlex experiments on the wide/tall world variant (bigvl/data/world/aspect_variant.py).

    python -m experiments.naflex squash [--world DIR] [--out docs/results/naflex_squash.csv]

`squash`: does resizing a wide or tall image to a square change what its shape looks like? For
each non-square one-object image of the variant's zero-shot split, the object's silhouette (pixels
within 60 of its colour) is matched against the five shapes' outlines (drawn by the world's own
inside-test at the object's stored radius and centroid, best rotation over ±36°), once in the image
as it is (aspect kept, as NaFlex patching keeps it) and once after a bilinear resize to a square of
the short side (the square recipe). It prints one JSON line per view: the template-matching shape
accuracy and the mean IoU of the true shape's outline, and writes them as CSV. No training: a
property of the images each recipe feeds the model.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NaFlex experiments on the wide/tall world variant.")
    sub = parser.add_subparsers(dest="command", required=True)
    squash = sub.add_parser("squash", help="shape identity of non-square images, aspect kept vs squashed")
    squash.add_argument("--world", default=WORLD, help="a built aspect variant (build_aspect_world)")
    squash.add_argument("--out", default="docs/results/naflex_squash.csv")
    args = parser.parse_args(argv)
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
