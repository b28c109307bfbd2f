"""The world study: why the demo learns colour but not shape, one change at a time.

    python -m experiments.world_study [--variants baseline,shapes_x1.4,...] [--steps 600]
                                      [--workdir workdirs/world_study] [--out docs/results/world_study_runs]

Each variant is configs/demo_classic.py (the demo before this study: its world, model,
optimizer, batch, steps) with a few config keys changed: world keys (`world.scene.*`, `world.noise.*`, ...:
the variant gets its own world, cached under $BIGVL_CACHE/world_study/) or training keys. Every variant trains the demo
budget (600 steps × 64 images) with seed 0 and is evaluated at the end: zero-shot top-1 on
the 30 colour × shape classes, T→I R@1, and hard-negative accuracy per kind (shape swap,
relation swap, colour swap). Finished runs (final_metrics.json) are reused. Writes OUT.md
(table) and OUT.csv and prints one JSON line per run.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import time

from bigvl.config import load_config, validate
from bigvl.data.world import ensure_config_world
from bigvl.data.world.scene import COLOURS, SHAPES
from bigvl.evaluators import entries
from bigvl.parallel.process import setup_process
from bigvl.train.loop import train_and_evaluate

# Shapes ×1.6 need ≤ 3 objects to lay out (SceneStyle).
EASY_WORLD = {"world.scene.shape_scale": 1.6, "world.scene.max_objects": 3, "world.scene.rotation": False,
              "world.scene.textured": False}
EASY_32PX = {**EASY_WORLD, "model.image.image_size": 32, "model.image.patch_size": 4}  # 64 tokens, as the demo
COCA = {"model.kind": "coca", "model.text.depth": 2, "model.decoder.depth": 2, "model.decoder.context_length": 32,
        "model.decoder.num_queries": 32, "model.decoder.pooler_heads": 4, "data.caption_strategy": "recap",
        "evals.long_retrieval.split": "", "evals.hard_negatives.split": "",
        "evals.pointing.split": ""}  # as configs/coca_demo.py
# A world whose captions need shape: half the train images hold one object, half of the
# multi-object scenes share one colour, and short captions never name the background (which
# alone told most captions of a batch apart; docs/results/world_study.md, "What a batch's captions need").
SHAPE_WORLD = {**EASY_32PX, "world.scene.num_object_weights": (0.5, 0.3, 0.2, 0.0),
               "world.scene.p_same_colour": 0.5, "world.scene.p_caption_background": (0.0, 0.0)}
SHAPE_WORLD_70 = {**SHAPE_WORLD, "world.scene.num_object_weights": (0.7, 0.2, 0.1, 0.0), "data.caption_strategy": "recap"}
SMALL_TOWERS = {"model.image.depth": 3, "model.image.width": 96, "model.image.mlp_dim": 384,
                "model.image.num_heads": 4, "model.text.depth": 2, "model.text.width": 96,
                "model.text.mlp_dim": 384, "model.text.num_heads": 4}
# Interchangeable words of the world's captions for NegCLIP edits (no synonyms in one group:
# "below" and "beneath" would make a true caption of a negative).
NEGATIVE_WORDS = [list(COLOURS), list(SHAPES), ["left", "right"], ["above", "below"], ["small", "large"]]

# name → (what it changes, config overrides). The world keys are relative to the demo world.
VARIANTS = {
    "old_world": ("the world before this study: shapes ×1.0, 1–4 objects, rotation, textures, no same-colour "
                  "scenes; demo model (GAP)", {"world.scene.shape_scale": 1.0, "world.scene.max_objects": 4,
                                                "world.scene.rotation": True, "world.scene.textured": True,
                                                "world.scene.p_same_colour": 0.0}),
    "baseline": ("configs/demo.py as it is", {}),
    "plain_background": ("no background textures", {"world.scene.textured": False}),
    "no_rotation": ("no rotated shapes", {"world.scene.rotation": False}),
    "max_3_objects": ("1–3 objects per image instead of 1–4", {"world.scene.max_objects": 3}),
    "shapes_x1.4": ("every shape 1.4× larger (small ≈ 2, large ≈ 3 patches across)",
                    {"world.scene.shape_scale": 1.4}),
    "same_colour_0.3": ("30 % of multi-object scenes in one colour (only shape tells them apart)",
                        {"world.scene.p_same_colour": 0.3}),
    "cls_pool": ("class-token pooling instead of GAP", {"model.image.pool": "cls"}),
    "lr_2e-3": ("peak learning rate 2e-3 instead of 1e-3", {"optim.lr": 2e-3}),
    "recap_only": ("train on the true captions only (no alt-text noise)", {"data.caption_strategy": "recap"}),
    "one_object": ("every train image holds one shape (the zero-shot setting itself)", {"world.scene.max_objects": 1}),
    "patch4_at_32px": ("the model sees 32-px images in 4-px patches (same 64 tokens, same FLOPs)",
                       {"model.image.image_size": 32, "model.image.patch_size": 4}),
    "patch4_at_32px_shapes_x1.4": ("both: 4-px patches at 32 px, shapes ×1.4",
                                   {"model.image.image_size": 32, "model.image.patch_size": 4,
                                    "world.scene.shape_scale": 1.4}),
    "conv_stem": ("convolutional stem (3 stride-2 3×3 convs, Xiao et al. 2021) instead of the patch Dense",
                  {"model.image.stem": "conv"}),
    "negclip": ("NegCLIP hard negatives: each caption with one colour, shape, relation or size word replaced "
                "or two swapped, ranked against every image", {"data.negative_word_groups": NEGATIVE_WORDS}),
    "negclip_conv_stem": ("NegCLIP hard negatives and the conv stem",
                          {"data.negative_word_groups": NEGATIVE_WORDS, "model.image.stem": "conv"}),
    "easy_32px": ("easy world (shapes ×1.6, 1–3 objects, no rotation, plain backgrounds) seen at 32 px in 4-px patches",
                  EASY_32PX),
    "easy_32px_negclip": ("the same with NegCLIP hard negatives",
                          {**EASY_32PX, "data.negative_word_groups": NEGATIVE_WORDS}),
    "easy_32px_coca": ("the easy world at 32 px as a CoCa (configs/coca_demo.py): captioning loss × 2 on the short "
                       "caption beside the contrastive one", {**EASY_32PX, **COCA}),
    "easy_32px_recap": ("the easy world at 32 px, trained on the true short captions only (`recap`)",
                        {**EASY_32PX, "data.caption_strategy": "recap"}),
    "easy_32px_one_object_recap": ("the easy world at 32 px with one object per image, `recap` captions",
                                   {**EASY_32PX, "world.scene.max_objects": 1, "data.caption_strategy": "recap"}),
    "easy_32px_one_object_nobg_recap": ("the easy world at 32 px, one object per image, `recap`, and short captions "
                                        "never name the background (a caption is then its image's colour × shape class)",
                                        {**EASY_32PX, "world.scene.max_objects": 1, "data.caption_strategy": "recap",
                                         "world.scene.p_caption_background": (0.0, 0.0)}),
    "easy_32px_coca_lr2e-3": ("the easy-world CoCa with peak learning rate 2e-3 instead of 1e-3",
                              {**EASY_32PX, **COCA, "optim.lr": 2e-3}),
    "easy_32px_coca_capw4": ("the easy-world CoCa with captioning weight 4 instead of 2",
                             {**EASY_32PX, **COCA, "loss.caption_weight": 4.0}),
    "shape_world": ("the easy world at 32 px whose captions need shape (SHAPE_WORLD: 50 % one-object images, "
                    "50 % one-colour multi-object scenes, no background in short captions)", SHAPE_WORLD),
    "shape_world_recap": ("the shape world, trained on the true short captions only (`recap`)",
                          {**SHAPE_WORLD, "data.caption_strategy": "recap"}),
    "shape_world_70_recap": ("the shape world with 70 % one-object images (2 objects 20 %, 3 objects 10 %), `recap`",
                             SHAPE_WORLD_70),
    "shape_world_80_recap": ("the shape world with 80 % one-object images (2 objects 15 %, 3 objects 5 %), `recap`",
                             {**SHAPE_WORLD, "world.scene.num_object_weights": (0.8, 0.15, 0.05, 0.0),
                              "data.caption_strategy": "recap"}),
    "shape_world_70_recap_small": ("shape_world_70_recap with smaller towers (image 3 × 96, text 2 × 96): "
                                   "less than half the FLOPs a step",
                                   {**SHAPE_WORLD_70, **SMALL_TOWERS}),
    "shape_world_70_recap_small_distinct": ("shape_world_70_recap_small with no one-colour scenes (every "
                                            "multi-object scene binds colours to shapes)",
                                            {**SHAPE_WORLD_70, **SMALL_TOWERS, "world.scene.p_same_colour": 0.0}),
    "shape_world_recap_negclip": ("the shape world, `recap`, with NegCLIP hard negatives",
                                  {**SHAPE_WORLD, "data.caption_strategy": "recap",
                                   "data.negative_word_groups": NEGATIVE_WORDS}),
    "shape_world_coca": ("the shape world as a CoCa (configs/coca_demo.py: captioning loss × 2 beside the contrastive one)",
                         {**SHAPE_WORLD, **COCA}),
    "combo_a": ("shapes ×1.3, 1–3 objects, 60 % same-colour scenes",
                {"world.scene.shape_scale": 1.3, "world.scene.max_objects": 3, "world.scene.p_same_colour": 0.6}),
}
METRICS = (("zeroshot/top1", "zero-shot top-1"), ("retrieval/t2i_r1", "T→I R@1"),
           ("hard_negatives/accuracy_swap_shape", "shape swap"),
           ("hard_negatives/accuracy_swap_relation", "relation swap"),
           ("hard_negatives/accuracy_swap_colour", "colour swap"))


def study_config(overrides: dict, steps: int, cache: str, eval_steps: int = 0):
    """configs/demo_classic.py (the demo before this study) with `overrides` applied; a changed world gets
    its own cache directory."""
    config = load_config("demo_classic")  # the demo this study started from
    default_world_dir = config.world.dir
    with config.unlocked():
        for key, value in overrides.items():
            node, (*path, last) = config, key.split(".")
            for part in path:
                node = node[part]
            if last not in node:
                raise KeyError(f"variant key {key!r}: {last!r} is not in the demo config")
            node[last] = value
        config.total_steps = steps
        config.eval_steps = eval_steps
        config.ckpt_steps = steps
        config.progress_bar = False
        config.report = False
        world = config.world.to_dict()
        world.pop("dir"), world.pop("build")
        digest = hashlib.sha1(json.dumps(world, sort_keys=True).encode()).hexdigest()[:10]
        world_dir = os.path.join(cache, f"world_{digest}")
        config.world.dir = world_dir
        for key in ("train_paths",):
            config.data[key] = [p.replace(default_world_dir, world_dir) for p in config.data[key]]
        config.data.tokenizer = config.data.tokenizer.replace(default_world_dir, world_dir)
        for name, kind, entry in entries(config.evals):  # every file an evaluator entry reads
            for option in kind.files:
                config.evals[name][option] = entry[option].replace(default_world_dir, world_dir)
    return config


def run_variant(name: str, steps: int, workdir: str, cache: str, eval_steps: int = 0) -> dict:
    """Trains and evaluates one variant (or reads its finished result); returns its metrics."""
    done = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(done):
        config = study_config(VARIANTS[name][1], steps, cache, eval_steps)
        validate(config)
        ensure_config_world(config.world)
        t0 = time.perf_counter()
        train_and_evaluate(config, workdir)
        with open(done) as f:
            result = {**json.load(f), "train_time_s": time.perf_counter() - t0}
        with open(done, "w") as f:
            json.dump(result, f, indent=2)
    with open(done) as f:
        return json.load(f)


def write_outputs(rows: list[dict], steps: int, out: str) -> str:
    """OUT.csv (one row per variant) and OUT.md (the table); returns the markdown."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| variant | change | " + " | ".join(label for _, label in METRICS) + " | train s |",
             "|---|---|" + "---:|" * (len(METRICS) + 1)]
    for row in rows:
        cells = [f"{row[k]:.3f}" if k in row else "–" for k, _ in METRICS]
        lines.append(f"| {row['variant']} | {VARIANTS[row['variant']][0]} | " + " | ".join(cells)
                     + f" | {row['train_time_s']:.0f} |")
    lines.append("")
    lines.append(f"Each row: configs/demo_classic.py with the change, {steps} steps × batch 64, seed 0, one run. "
                 "Chance: zero-shot 1/30 = 0.033, R@1 1/500, hard negatives 0.5.")
    table = "\n".join(lines)
    with open(out + ".md", "w") as f:
        f.write(table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.world_study", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval_steps", type=int, default=0, help="also evaluate every N steps (0 = at the end)")
    parser.add_argument("--workdir", default="workdirs/world_study")
    parser.add_argument("--out", default="docs/results/world_study_runs")
    args = parser.parse_args(argv)
    setup_process(level=logging.WARNING)  # before JAX starts, as bigvl.main runs
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: {unknown[0]!r} is not one of {list(VARIANTS)}")
    cache = os.path.join(os.environ.get("BIGVL_CACHE", os.path.expanduser("~/.cache/bigvl")), "world_study")
    rows = []
    for name in names:
        result = run_variant(name, args.steps, os.path.join(args.workdir, name), cache, args.eval_steps)
        row = {"variant": name, **{k: result[k] for k, _ in METRICS if k in result},
               "train_time_s": result.get("train_time_s", float("nan"))}
        rows.append(row)
        print(json.dumps(row), flush=True)
        table = write_outputs(rows, args.steps, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
