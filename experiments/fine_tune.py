"""Full fine-tuning vs LiT vs LoRA from a trained demo run, on a shifted caption distribution; WiSE-FT.

    python -m bigvl.main --config demo --workdir workdirs/demo
    python -m experiments.fine_tune --base workdirs/demo [--modes full,lit,lora] [--seeds 0,1,2]
        [--steps 150] [--workdir workdirs/fine_tune] [--out docs/results/fine_tuning]

The base run trained on the short synthetic captions; each (mode, seed) fine-tunes it on the long
ones (configs/demo_finetune.py:MODE) for `--steps` steps and is evaluated at the end on the demo's
suites: `long_retrieval` (long captions as queries) is the target, zero-shot and short retrieval
what the base could do. The base itself is evaluated too (row `base`). Speed and memory: the three
train steps compiled and stepped in turn on one random batch (benchmarks/train_step.py
`run_alternating`: median step time, XLA's memory analysis per device), with trainable params and
optimizer-state size. WiSE-FT: θ(α) = (1 − α)·θ_base + α·θ_mode of each mode's seed-0 run over
--alphas (bigvl/cli/wise_ft.py). Finished runs (final_metrics.json) are reused.

Writes OUT_runs.csv (one row per run), OUT_speed.csv, OUT_wise.csv / OUT_wise.png, and prints a
markdown summary (mean ± std over seeds) to paste into OUT.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os

import jax
import numpy as np

from bigvl.cli.wise_ft import sweep
from bigvl.config import load_config
from bigvl.evaluators import run_evals
from bigvl.inference.run import load_run
from bigvl.parallel.process import setup_process
from bigvl.train.freeze import count_trainable
from bigvl.train.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "demo_finetune.py")
METRICS = (("long_retrieval/t2i_r1", "long T→I R@1"), ("long_retrieval/i2t_r1", "long I→T R@1"),
           ("retrieval/t2i_r1", "T→I R@1"), ("retrieval/i2t_r1", "I→T R@1"), ("zeroshot/top1", "zero-shot top-1"),
           ("hard_negatives/accuracy", "hard-neg acc"))


def mode_config(mode: str, steps: int, seed: int, base: str):
    config = load_config(f"{CONFIG}:{mode},steps={steps}")
    config.seed = seed
    config.init.workdir = os.path.abspath(base)
    config.progress_bar = False
    config.log_example_ids = False
    return config


def run_one(mode: str, seed: int, steps: int, base: str, workdir: str) -> dict:
    path = os.path.join(workdir, f"{mode}_seed{seed}")
    done = os.path.join(path, "final_metrics.json")
    if not os.path.exists(done):
        train_and_evaluate(mode_config(mode, steps, seed, base), path)
    with open(done) as f:
        return {"mode": mode, "seed": seed, **json.load(f)}


def speed(modes, steps: int, base: str) -> list[dict]:
    """Per mode: median train-step time, XLA peak memory per device, trainable / frozen params, opt-state bytes."""
    from benchmarks.train_step import CompiledStep, run_alternating
    configs = [mode_config(m, steps, 0, base) for m in modes]
    records = run_alternating(configs, steps=12, warmup=2)
    rows = []
    for mode, config, rec in zip(modes, configs, records):
        bench = CompiledStep(config)  # its compiled program: XLA's FLOPs of the step
        state = jax.eval_shape(lambda: bench.state)
        trainable, frozen = count_trainable(state["params"], config.optim)
        opt_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state["opt_state"]))
        rows.append({"mode": mode, "step_time_s": rec["step_time_s"], "step_time_min_s": rec["step_time_min_s"],
                     "peak_memory_bytes": rec["peak_memory_bytes"], "memory_source": rec["memory_source"],
                     "trainable_params": trainable, "frozen_params": frozen, "opt_state_bytes": opt_bytes,
                     "xla_gflops_per_step": float(bench.compiled.cost_analysis()["flops"]) / 1e9})
    return rows


def write_csv(rows: list[dict], path: str) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def summary(rows: list[dict], speed_rows: list[dict]) -> str:
    """Markdown: per mode, mean ± std of each metric over seeds, then step time and memory."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    head = "| mode | runs | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for mode in modes:
        runs = [r for r in rows if r["mode"] == mode]
        cells = []
        for key, _ in METRICS:
            values = np.array([r[key] for r in runs], float)
            cells.append(f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""))
        lines.append(f"| {mode} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += ["", "| mode | step time (median) | XLA GFLOPs / step | peak memory / device | trainable params | "
              "frozen params | optimizer state |", "|---|---|---|---|---|---|---|"]
    for s in speed_rows:
        lines.append(f"| {s['mode']} | {1e3 * s['step_time_s']:.1f} ms | {s['xla_gflops_per_step']:.2f} | "
                     f"{s['peak_memory_bytes'] / 2**20:.1f} MiB | "
                     f"{int(s['trainable_params']):,} | {int(s['frozen_params']):,} | "
                     f"{s['opt_state_bytes'] / 2**20:.2f} MiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fine_tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a trained demo workdir (configs/demo.py)")
    parser.add_argument("--modes", default="full,lit,lora")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--workdir", default="workdirs/fine_tune")
    parser.add_argument("--out", default="docs/results/fine_tuning")
    parser.add_argument("--parts", default="quality,wise,speed",
                        help="what to run; a part left out is read back from its OUT_*.csv for the summary")
    args = parser.parse_args(argv)
    setup_process()
    logging.getLogger("bigvl").setLevel(logging.WARNING)
    modes, parts = args.modes.split(","), args.parts.split(",")
    if "quality" in parts or "wise" in parts:
        base_run = load_run(args.base)
        evals = mode_config(modes[0], args.steps, 0, args.base).evals
    if "quality" in parts:
        rows = [{"mode": "base", "seed": 0, **run_evals(base_run.encoder, evals)}]
        print(json.dumps(rows[-1]), flush=True)
        for mode in modes:
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(run_one(mode, seed, args.steps, args.base, args.workdir))
                print(json.dumps(rows[-1]), flush=True)
                write_csv(rows, args.out + "_runs.csv")
    else:
        rows = read_csv(args.out + "_runs.csv")
    if "wise" in parts:
        wise = []
        for mode in modes:
            tuned = load_run(os.path.join(args.workdir, f"{mode}_seed0"))
            for row in sweep(base_run, tuned, [float(a) for a in args.alphas.split(",")], evals):
                wise.append({"mode": mode, **row})
                print(json.dumps(wise[-1]), flush=True)
        write_csv(wise, args.out + "_wise.csv")
        plot_wise(wise, args.out + "_wise.png")
    if "speed" in parts:
        speed_rows = speed(modes, args.steps, args.base)
        write_csv(speed_rows, args.out + "_speed.csv")
    else:
        speed_rows = read_csv(args.out + "_speed.csv")
    print(summary(rows, speed_rows))
    return 0


def read_csv(path: str) -> list[dict]:
    """Rows of a CSV this module wrote, numbers parsed back."""
    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text
    with open(path) as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_wise(rows: list[dict], path: str) -> None:
    """One panel per mode: long (target) and short retrieval and zero-shot against α."""
    import matplotlib.pyplot as plt
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.4), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        part = [r for r in rows if r["mode"] == mode]
        for key, label in METRICS[::2]:
            ax.plot([r["alpha"] for r in part], [r[key] for r in part], marker="o", label=label)
        ax.set_title(f"WiSE-FT: base → {mode}")
        ax.set_xlabel("α")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
