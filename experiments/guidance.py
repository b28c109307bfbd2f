"""Classifier-free guidance of the demo captioner: CIDEr-D of its greedy captions at several w.

    python -m experiments.guidance [--workdir workdirs/coca_guided_demo] [--steps 600]
                                   [--weights 0,1,2,4] [--out docs/results/guidance_runs]

Trains configs/coca_guided_demo.py (`model.decoder.image_drop` 0.1) for `--steps` in WORKDIR
unless it holds a finished run, then captions the held-out retrieval images greedily (KV cache on)
with guidance w for each `--weights` value and scores them against the short references (the
captioner's target) and the long ones (more specific descriptions of the same image): CIDEr-D,
BLEU-4, the median caption length in words and the fraction of distinct captions. Writes OUT.csv
and prints one JSON line per w.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os

import numpy as np

from bigvl.config import load_config, validate
from bigvl.data.world import ensure_config_world
from bigvl.evaluators.caption_metrics import caption_scores, tokenize
from bigvl.evaluators.captioning import generate
from bigvl.evaluators.splits import SplitCache
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.run import load_run
from bigvl.parallel.process import setup_process
from bigvl.train.loop import train_and_evaluate


def train_once(workdir: str, steps: int, config_name: str = "coca_guided_demo") -> None:
    """Trains configs/CONFIG_NAME.py:steps=STEPS into WORKDIR unless it finished there."""
    if os.path.exists(os.path.join(workdir, "final_metrics.json")):
        return
    config = load_config(f"{config_name}:steps={steps}")
    with config.unlocked():
        config.progress_bar = False
    validate(config)
    ensure_config_world(config.world)
    train_and_evaluate(config, workdir)


def score(encoder, split: str, weight: float, splits: SplitCache, max_length: int) -> dict:
    """Greedy captions at guidance `weight` → CIDEr-D / BLEU-4 vs short and long references, lengths."""
    cfg = DecodeConfig(max_length=max_length, guidance=weight)
    captions, short_refs = generate(encoder, split, "short", cfg, splits)
    long_refs = {r["id"]: [r["captions"]["long"]] for r in splits.load(split)[1]}
    short, long = caption_scores(captions, short_refs), caption_scores(captions, long_refs)
    words = [len(tokenize(c).split()) for c in captions.values()]
    return {"w": weight, "cider_short": short["cider_d"], "bleu4_short": short["bleu4"], "cider_long": long["cider_d"],
            "bleu4_long": long["bleu4"], "median_words": float(np.median(words)),
            "distinct": len(set(captions.values())) / len(captions)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.guidance", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="workdirs/coca_guided_demo")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--weights", default="0,1,2,4")
    parser.add_argument("--out", default="docs/results/guidance_runs")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    train_once(args.workdir, args.steps)
    score_all(args.workdir, [float(w) for w in args.weights.split(",") if w], score, args.out)
    return 0


def score_all(workdir: str, settings: list, score_fn, out: str) -> None:
    """score_fn(encoder, split, setting, splits, decoder context) for each setting on WORKDIR's retrieval
    split: one JSON line each, all in OUT.csv."""
    run = load_run(workdir)
    split = run.config.evals.retrieval.split
    splits, rows = SplitCache(run.encoder), []
    for setting in settings:
        rows.append(score_fn(run.encoder, split, setting, splits, run.config.model.decoder.context_length))
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    raise SystemExit(main())
