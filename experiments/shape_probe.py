"""Diagnostics of the world study (docs/results/world_study.md): can the image tower learn shape at all,
and what did a trained run learn?

    python -m experiments.shape_probe supervised --world DIR [--stem patch|conv] [--steps 300]
    python -m experiments.shape_probe supervised --render [--shape_scale 1.6 --no_rotation --plain]
                                                 [--image_size 32 --patch_size 4] [--steps 1000]
    python -m experiments.shape_probe run --workdir workdirs/world_study/one_object

`supervised`: the demo's image tower (configs/demo.py model.image, GAP) plus a linear head,
trained with cross-entropy on the shape (5 classes) of one-object train images of the world in
DIR (its first train shard, the last 500 images held out), with the demo's optimizer settings;
prints held-out shape accuracy every 100 steps. It asks whether the tower can learn shape from
a direct signal at the demo's budget, without the contrastive objective. With `--render` the
images are 5,000 freshly drawn one-object scenes of the given scene style (world.scene keys),
at `--image_size` seen in `--patch_size` patches: how fast shape is learnable in a changed world.

`run`: for a trained two-tower run, the cosine similarity of the text embeddings of "a photo of
the red {shape}." across shapes (1.0 = the text tower ignores the shape word), and 5-fold
ridge-regression probes of the image embeddings of the zero-shot split for shape and colour.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import time

import flax.linen as nn
import jax
import numpy as np
import optax

import bigvl
from bigvl.config import load_config
from bigvl.data.image_ops import decode_image
from bigvl.data.records import decode_example, read_records
from bigvl.data.world.render import render_scene
from bigvl.data.world.scene import SceneStyle, sample_scene
from bigvl.evaluators.splits import load_split
from bigvl.models import image_size_of
from bigvl.models.vit import VisionTower
from bigvl.parallel.process import setup_process
from experiments.ablation import ROOT

SHAPES = ("circle", "square", "triangle", "star", "ring")


def one_object_images(world_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N,S,S,3], shape index [N]) of the one-object images of the world's first train shard."""
    path = sorted(glob.glob(os.path.join(world_dir, "train-*.array_record")))[0]
    images, labels = [], []
    for data in read_records(path):
        record = decode_example(data, where=path)
        objects = record["extras"]["scene"]["objects"]
        if len(objects) == 1:
            images.append(np.asarray(decode_image(record["image"])))
            labels.append(SHAPES.index(objects[0]["shape"]))
    return np.stack(images), np.asarray(labels)


def rendered_images(style, image_size: int, count: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [count,S,S,3], shape index [count]) of one-object scenes drawn with SceneStyle `style`."""
    rng, images, labels = np.random.default_rng(seed), [], []
    for _ in range(count):
        scene = sample_scene(rng, 1, style=style)
        images.append(render_scene(scene, image_size))
        labels.append(SHAPES.index(scene.objects[0].shape))
    return np.stack(images), np.asarray(labels)


def supervised(world_dir: str, stem: str, steps: int, batch: int = 64, held_out: int = 500,
               rendered: tuple | None = None, patch_size: int = 0) -> list[dict]:
    """Trains the demo image tower + a linear head on shape labels; returns [{step, loss, held_out_acc}].

    rendered: (images, labels) to use instead of the world's; patch_size: 0 = the demo's."""
    ic = load_config(os.path.join(ROOT, "configs", "demo.py")).model.image
    size = image_size_of(ic)
    if patch_size:
        size = dataclasses.replace(size, patch_size=patch_size)
    images, labels = rendered if rendered is not None else one_object_images(world_dir)
    if len(images) <= held_out:
        raise ValueError(f"{world_dir}: {len(images)} one-object images in the first shard, need > {held_out}")

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x):
            pooled, _ = VisionTower(size.width, size.depth, size.num_heads, size.mlp_dim, size.patch_size,
                                    pool=ic.pool, stem=stem)(x)
            return nn.Dense(len(SHAPES))(pooled)

    model = Probe()
    params = nn.unbox(model.init(jax.random.key(0), images[:2]))
    demo = load_config(os.path.join(ROOT, "configs", "demo.py")).optim
    tx = optax.chain(optax.clip_by_global_norm(demo.clip_norm), optax.adamw(
        optax.warmup_cosine_decay_schedule(0.0, demo.lr, demo.warmup_steps, steps), b1=demo.b1, b2=demo.b2,
        eps=demo.eps, weight_decay=demo.weight_decay))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_n, rng, out, t0 = len(images) - held_out, np.random.default_rng(0), [], time.perf_counter()
    for i in range(1, steps + 1):
        idx = rng.integers(0, train_n, batch)
        params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
        if i % 100 == 0 or i == steps:
            pred = np.argmax(np.asarray(model.apply(params, images[train_n:])), axis=1)
            out.append({"step": i, "loss": float(loss), "held_out_acc": float(np.mean(pred == labels[train_n:])),
                        "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps({"stem": stem, **out[-1]}), flush=True)
    return out


def ridge_probe(x: np.ndarray, y: np.ndarray, folds: int = 5, alpha: float = 10.0) -> float:
    """Held-out accuracy of a one-vs-all ridge classifier on standardised features, k-fold."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x = np.c_[x, np.ones(len(x))]
    fold, accuracies = np.arange(len(x)) % folds, []
    for f in range(folds):
        train, test = fold != f, fold == f
        targets = np.eye(y.max() + 1)[y[train]]
        w = np.linalg.solve(x[train].T @ x[train] + alpha * np.eye(x.shape[1]), x[train].T @ targets)
        accuracies.append(np.mean(np.argmax(x[test] @ w, axis=1) == y[test]))
    return float(np.mean(accuracies))


def run_report(workdir: str) -> dict:
    """Shape-word blindness of the text tower and shape/colour probes of the image embeddings."""
    run = bigvl.load(workdir)
    texts = bigvl.encode_texts(run, [f"a photo of the red {s}." for s in SHAPES])
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    sims = texts @ texts.T
    images, records = load_split(run.config.evals.zeroshot.split, run.config.model.image.image_size)
    labels = np.asarray([r["extras"]["label"] for r in records])
    embeds = bigvl.encode_images(run, images)
    return {"text_shape_cosine_mean": float(sims[~np.eye(len(SHAPES), dtype=bool)].mean()),
            "image_shape_probe": ridge_probe(embeds, labels % len(SHAPES)),
            "image_colour_probe": ridge_probe(embeds, labels // len(SHAPES)), "images": len(labels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.shape_probe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sup = sub.add_parser("supervised")
    source = sup.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", help="a built world: its first shard's one-object images")
    source.add_argument("--render", action="store_true", help="draw one-object scenes of the style below")
    sup.add_argument("--stem", default="patch", choices=("patch", "conv"))
    sup.add_argument("--steps", type=int, default=300)
    sup.add_argument("--shape_scale", type=float, default=1.0)
    sup.add_argument("--no_rotation", action="store_true")
    sup.add_argument("--plain", action="store_true", help="no background textures")
    sup.add_argument("--image_size", type=int, default=64)
    sup.add_argument("--patch_size", type=int, default=0, help="0 = the demo's (8)")
    rep = sub.add_parser("run")
    rep.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    setup_process(level=logging.WARNING)  # before JAX starts its backend, as bigvl.main runs
    if args.command == "supervised" and args.render:
        style = SceneStyle(shape_scale=args.shape_scale, rotation=not args.no_rotation, textured=not args.plain)
        supervised("", args.stem, args.steps, rendered=rendered_images(style, args.image_size),
                   patch_size=args.patch_size)
    elif args.command == "supervised":
        supervised(os.path.expanduser(args.world), args.stem, args.steps)
    else:
        print(json.dumps({"workdir": args.workdir, **run_report(args.workdir)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
