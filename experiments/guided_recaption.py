"""Guidance's claim for recaptioning: CLIPs trained on captions decoded with guidance w vs without.

    python -m experiments.guided_recaption [--captioner workdirs/coca_guided_demo300] [--captioner_steps 300]
        [--weights 0,2] [--seeds 0,1,2] [--clip_steps 300] [--workdir workdirs/guided_recaption]
        [--out docs/results/guided_recaption_runs]

"Guiding image captioning models toward more specific captions" (Kornblith et al. 2023): decoding
with classifier-free guidance gives more distinctive captions. Here the claim is carried to what
the captions are for. Stages (each finished one is reused):
1. captioner: configs/coca_guided_demo.py (`model.decoder.image_drop` 0.1) for --captioner_steps in
   CAPTIONER, unless it holds a finished run (experiments.guidance trains the same one);
2. recaption: every train record of the demo world, greedy with the KV cache, at each guidance
   weight w into WORKDIR/recaptioned_w{w} (field "gen", `bigvl.inference.recaption`);
3. CLIP per (w, seed): `recipe_demo:recap` on "gen" (the generated caption only, so the captions'
   distinctiveness is all that differs), --clip_steps, evaluated on the demo world's held-out splits
   (whose texts are the world's own, not generated).
Writes OUT.csv (one row per CLIP run: w, seed, metrics named as in metrics.jsonl, the share of
distinct generated captions) and OUT.md (mean ± std per w, each metric's gap to w = 0 in pooled std).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os

import numpy as np

from bigvl.config import load_config
from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.parallel.process import setup_process
from experiments.guidance import train_once
from experiments.recaption_experiment import point_at_world, run_recaption, train_run, world_settings
from experiments.recaption_report import pooled_std

METRICS = ("hard_negatives/accuracy", "hard_negatives/accuracy_swap_colour", "hard_negatives/accuracy_swap_shape",
           "hard_negatives/accuracy_swap_relation", "hard_negatives/accuracy_replace_colour",
           "retrieval/t2i_r1", "retrieval/i2t_r1", "zeroshot/top1")


def distinct_share(out_dir: str) -> float:
    """The share of distinct "gen" captions among the recaptioned records."""
    captions = [decode_example(d, where=p)["captions"]["gen"]
                for p in resolve_paths([os.path.join(out_dir, "train-*.array_record")]) for d in read_records(p)]
    return len(set(captions)) / len(captions)


def train_clip(world: dict, shards: str, seed: int, steps: int, workdir: str) -> dict:
    config = load_config(f"recipe_demo:recap,steps={steps}")
    point_at_world(config, world)
    config.data.train_paths = [shards]
    config.data.caption_field = "gen"
    config.seed = seed
    return train_run(config, workdir, "")


def table(rows: list[dict], weights: list[float]) -> str:
    """Mean ± sample std per w, and each w's gap to the first w in pooled std (recaption_report.pooled_std;
    > 2: the gap holds)."""
    def stats(w: float, m: str) -> tuple[float, float]:
        a = np.array([r[m] for r in rows if r["w"] == w], float)
        return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0

    lines = ["| w | runs | distinct captions | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for w in weights:
        mine = [r for r in rows if r["w"] == w]
        cells = []
        for m in METRICS:
            ours, base = stats(w, m), stats(weights[0], m)
            cell = f"{ours[0]:.3f} ± {ours[1]:.3f}"
            if w != weights[0] and len(mine) > 1:
                cell += f" ({(ours[0] - base[0]) / max(pooled_std(ours, base), 1e-9):+.1f} σ)"
            cells.append(cell)
        lines.append(f"| {w:g} | {len(mine)} | {mine[0]['distinct_captions']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.guided_recaption", description=__doc__.splitlines()[0])
    parser.add_argument("--captioner", default="workdirs/coca_guided_demo300")
    parser.add_argument("--captioner_steps", type=int, default=300)
    parser.add_argument("--weights", default="0,2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--clip_steps", type=int, default=300)
    parser.add_argument("--workdir", default="workdirs/guided_recaption")
    parser.add_argument("--out", default="docs/results/guided_recaption_runs")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    weights = [float(w) for w in args.weights.split(",") if w]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    world = world_settings(0.5, "", "")[1]  # the demo world, every caption present
    train_once(args.captioner, args.captioner_steps)
    rows = []
    for w in weights:
        out_dir = os.path.join(args.workdir, f"recaptioned_w{w:g}")
        manifest = run_recaption(args.captioner, world, out_dir, guidance=w, only_missing="")
        distinct = distinct_share(out_dir)
        print(json.dumps({"stage": "recaption", "w": w, "distinct_captions": distinct,
                          "decode_seconds": manifest.get("decode_seconds")}), flush=True)
        for seed in seeds:
            result = train_clip(world, os.path.join(out_dir, "train-*.array_record"), seed, args.clip_steps,
                                os.path.join(args.workdir, f"clip_w{w:g}_seed{seed}"))
            rows.append({"w": w, "seed": seed, "distinct_captions": distinct, **{m: result[m] for m in METRICS},
                         "train_time_s": result.get("train_time_s", float("nan"))})
            print(json.dumps(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows, weights)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
