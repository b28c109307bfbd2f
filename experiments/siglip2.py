"""The SigLIP 2 study: SigLIP vs SigLIP + LocCa vs the full recipe on the demo world, 3 seeds.

    python -m experiments.siglip2 run [--recipes siglip,siglip_locca,siglip2] [--seeds 0,1,2] [--steps 600]
                                      [--steps_for siglip_locca=500]
                                      [--root workdirs/siglip2] [--csv docs/results/siglip2.csv]
    python -m experiments.siglip2 table [--csv docs/results/siglip2.csv]

`run` trains `configs/siglip2_demo.py:RECIPE` once per (recipe, seed), sequentially, at equal wall time:
the first recipe runs `--steps` steps; before each other recipe's first run, a 40-step calibration
run of it and of the first recipe (no evaluations) gives their median step times, and the recipe
gets `--steps` × t_first / t_recipe steps (a cheaper step, more steps), unless `--steps_for` sets them. Each run evaluates once at
its end. One CSV row per run: recipe, seed, steps, the median logged `step_time_s`, peak resident
memory (MiB, /usr/bin/time), the 1-minute load average at its start, then every final metric
named as in metrics.jsonl (pointing/accuracy, zeroshot/top1, hard_negatives/accuracy_swap_relation,
dense/miou, refexp/accuracy, retrieval/t2i_r1, ...). Rows already in the CSV (same recipe and
seed) are kept and not rerun, so the study resumes.

`table`: per recipe, mean ± std over seeds of the goal's metrics, and each recipe's difference to
`siglip` in pooled standard deviations (sqrt of the mean of the two variances).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

GOAL = ("pointing/accuracy", "dense/miou", "hard_negatives/accuracy_swap_relation", "zeroshot/top1",
        "refexp/accuracy", "retrieval/t2i_r1")
FIRST_COLUMNS = ("recipe", "seed", "steps", "train/step_time_s", "train/peak_rss_mib", "load_avg_1m")
CALIBRATION_STEPS = 40
EVAL_ENTRIES = ("zeroshot", "retrieval", "long_retrieval", "hard_negatives", "pointing", "refexp", "dense")


def _train(recipe: str, seed: int, steps: int, workdir: str, evals: bool = True) -> dict:
    """Trains one run (fresh workdir); returns {step_time_s, peak_rss_mib, load, final metrics}."""
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, never a resume
    load = os.getloadavg()[0]
    overrides = [f"--config.seed={seed}", f"--config.total_steps={steps}", "--config.eval_steps=0",
                 f"--config.ckpt_steps={steps}", "--config.progress_bar=False", "--config.report=False",
                 f"--config.optim.warmup_steps={min(50, steps // 4)}"]
    if not evals:
        overrides += [f"--config.evals.{name}.split=" for name in EVAL_ENTRIES]
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", timing.name, sys.executable, "-m", "bigvl.main",
               "--config", f"siglip2_demo:{recipe}", "--workdir", workdir, *overrides]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        peak_kib = float(timing.read().strip().splitlines()[-1])
    times = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "step_time_s" in row and row["step"] > 10:  # the first logged interval holds the compile
                times.append(row["step_time_s"])
    metrics = {}
    if evals:
        with open(os.path.join(workdir, "final_metrics.json")) as f:
            metrics = json.load(f)
        metrics = metrics.get("metrics", metrics)
    return {"train/step_time_s": float(np.median(times)), "train/peak_rss_mib": peak_kib / 1024,
            "load_avg_1m": load, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def _read(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _write(path: str, rows: list[dict]) -> None:
    metrics = sorted({k for row in rows for k in row} - set(FIRST_COLUMNS))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIRST_COLUMNS) + metrics)
        writer.writeheader()
        writer.writerows(rows)


def run(args) -> None:
    recipes, seeds = args.recipes.split(","), [int(s) for s in args.seeds.split(",")]
    rows = _read(args.csv)
    done = {(row["recipe"], int(row["seed"])) for row in rows}
    steps = {recipes[0]: args.steps}
    steps.update({k: int(v) for k, v in (item.split("=") for item in filter(None, args.steps_for.split(",")))})
    for recipe in recipes[1:]:
        if recipe in steps or all((recipe, seed) in done for seed in seeds):
            continue
        t = {r: _train(r, 0, CALIBRATION_STEPS, os.path.join(args.root, f"calibrate_{r}"), evals=False)
             ["train/step_time_s"] for r in (recipes[0], recipe)}
        steps[recipe] = int(round(args.steps * t[recipes[0]] / t[recipe]))
        print(f"equal wall time: {recipe} {steps[recipe]} steps (median step {t[recipe]:.3f} s vs "
              f"{recipes[0]} {t[recipes[0]]:.3f} s)", flush=True)
    for seed in seeds:
        for recipe in recipes:
            if (recipe, seed) in done:
                continue
            result = _train(recipe, seed, steps[recipe], os.path.join(args.root, f"{recipe}_seed{seed}"))
            rows.append({"recipe": recipe, "seed": seed, "steps": steps[recipe], **result})
            _write(args.csv, rows)
    table(args)


def table(args) -> None:
    rows = _read(args.csv)
    recipes = list(dict.fromkeys(row["recipe"] for row in rows))
    values = {(r, m): np.asarray([float(row[m]) for row in rows if row["recipe"] == r and row.get(m)])
              for r in recipes for m in GOAL}
    print("| metric | " + " | ".join(recipes) + " | " + " | ".join(f"{r} − siglip (pooled std)" for r in recipes[1:]) + " |")
    print("|---" * (1 + 2 * len(recipes) - 1) + "|")
    for m in GOAL:
        cells = [f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else (f"{v.mean():.3f}" if len(v) else "–")
                 for v in (values[(r, m)] for r in recipes)]
        diffs = []
        for r in recipes[1:]:
            a, b = values[(r, m)], values.get(("siglip", m), np.asarray([]))
            if len(a) > 1 and len(b) > 1:
                pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
                diffs.append(f"{a.mean() - b.mean():+.3f} ({(a.mean() - b.mean()) / pooled:+.1f})" if pooled > 0
                             else f"{a.mean() - b.mean():+.3f}")
            else:
                diffs.append("–")
        print(f"| {m} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--recipes", default="siglip,siglip_locca,siglip2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--steps_for", default="", help="RECIPE=N,...: steps set by hand (from an earlier calibration)")
    parser.add_argument("--root", default="workdirs/siglip2")
    parser.add_argument("--csv", default="docs/results/siglip2.csv")
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
