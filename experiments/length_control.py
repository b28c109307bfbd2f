"""Length control of the demo captioner: does the caption follow the requested word count?

    python -m experiments.length_control [--workdir workdirs/coca_length_demo] [--steps 600]
                                         [--lengths 5,10,20,40] [--out docs/results/length_control_runs]

Trains configs/coca_length_demo.py (targets "N words: caption" of 3–64 words) for `--steps` in WORKDIR
unless it holds a finished run, then captions the held-out retrieval images greedily (KV cache on) with
the prompt "N words:" forced for each `--lengths` value (and once unprompted: the model picks N) and
reports per requested length: the median, 10th and 90th percentile of the caption's word count, the
share of captions within ±2 words of N, and CIDEr-D / BLEU-4 against the short (~11 words) and the
long (40–80 words) references. Writes OUT.csv and prints one JSON line per length.
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

from bigvl.data.length_prefix import strip_length_prefix
from bigvl.evaluators.caption_metrics import caption_scores
from bigvl.evaluators.captioning import generate
from bigvl.evaluators.splits import SplitCache
from bigvl.inference.decoding import DecodeConfig, length_prefix_ids
from bigvl.parallel.process import setup_process
from experiments.guidance import score_all, train_once


def score(encoder, split: str, length: int, splits: SplitCache, max_length: int) -> dict:
    """Greedy captions prompted with "LENGTH words:" (0: unprompted) → word counts and CIDEr-D vs short/long refs."""
    cfg = DecodeConfig(max_length=max_length, prefix=length_prefix_ids(encoder.captioner, length) if length else ())
    captions, short_refs = generate(encoder, split, "short", cfg, splits)
    captions = {k: strip_length_prefix(c) for k, c in captions.items()}
    long_refs = {r["id"]: [r["captions"]["long"]] for r in splits.load(split)[1]}
    short, long = caption_scores(captions, short_refs), caption_scores(captions, long_refs)
    words = np.array([len(c.split()) for c in captions.values()])
    return {"requested": length or "none", "median_words": float(np.median(words)),
            "p10_words": float(np.percentile(words, 10)), "p90_words": float(np.percentile(words, 90)),
            "within_2": float(np.mean(np.abs(words - length) <= 2)) if length else float("nan"),
            "cider_short": short["cider_d"], "bleu4_short": short["bleu4"],
            "cider_long": long["cider_d"], "bleu4_long": long["bleu4"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.length_control", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="workdirs/coca_length_demo")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lengths", default="5,10,20,40")
    parser.add_argument("--out", default="docs/results/length_control_runs")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    train_once(args.workdir, args.steps, "coca_length_demo")
    score_all(args.workdir, [int(n) for n in args.lengths.split(",") if n] + [0], score, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
