"""WiSE-FT (Wortsman et al. 2022): evaluate weight-space ensembles of a run and its fine-tuned version.

    bigvl wise_ft --zero_shot workdirs/demo --fine_tuned workdirs/demo_ft --alphas 0,0.25,0.5,0.75,1 --out wise/

θ(α) = (1 − α)·θ₀ + α·θ₁ for each α, with θ₀ the params of --zero_shot and θ₁ those of --fine_tuned
(latest checkpoints; LoRA runs merged first), evaluated on the fine-tuned run's `config.evals`
(override with --config.evals... as in `bigvl evaluate`). The two must be the same architecture:
the model keys that change what a model computes (bigvl/train/init_check.py) and every param's
path and shape are compared, and a difference is one error naming it. Writes OUT/wise_ft.csv,
OUT/wise_ft.md (one row per α) and OUT/wise_ft.png (the metrics against α).
"""
from __future__ import annotations

import csv
import dataclasses
import os
import sys

import jax
import jax.numpy as jnp

from bigvl.cli import command_parser
from bigvl.config import ConfigError, apply_overrides, load_config_json, split_overrides
from bigvl.evaluators import run_evals
from bigvl.inference.run import Run, load_run
from bigvl.models import param_path
from bigvl.parallel.process import setup_process
from bigvl.train.init_check import architecture_differences

PLOT_SUFFIXES = ("/top1", "/i2t_r1", "/t2i_r1", "/accuracy")  # the metrics drawn by default


def interpolate(theta0, theta1, alpha: float):
    """(1 − α)·θ₀ + α·θ₁ leaf by leaf, computed in float32 and cast to θ₀'s dtypes (same trees)."""
    def mix(a, b):
        return ((1.0 - alpha) * a.astype(jnp.float32) + alpha * b.astype(jnp.float32)).astype(a.dtype)
    return jax.tree.map(mix, theta0, theta1)


def check_same_architecture(zero_shot: Run, fine_tuned: Run) -> None:
    """ValueError naming what differs: a model config key that changes the function, or a param's
    path or shape (e.g. another text context length)."""
    differences = architecture_differences(zero_shot.config.model, fine_tuned.config.model)
    if differences:
        raise ValueError("wise_ft: the runs are not the same architecture: " + "; ".join(differences))
    shapes = [{param_path(p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(run.params)[0]}
              for run in (zero_shot, fine_tuned)]
    for name in sorted(set(shapes[0]) | set(shapes[1])):
        here, there = shapes[0].get(name), shapes[1].get(name)
        if here != there:
            raise ValueError(f"wise_ft: param {name!r} is {here or 'missing'} in --zero_shot but "
                             f"{there or 'missing'} in --fine_tuned")


def sweep(zero_shot: Run, fine_tuned: Run, alphas, evals_cfg) -> list[dict]:
    """[{alpha, metric: value, ...}] for each α: the interpolated params through the fine-tuned run's encoder."""
    check_same_architecture(zero_shot, fine_tuned)
    rows = []
    for alpha in alphas:
        params = interpolate(zero_shot.params, fine_tuned.params, float(alpha))
        encoder = dataclasses.replace(fine_tuned.encoder, params=params)
        rows.append({"alpha": float(alpha), **run_evals(encoder, evals_cfg)})
    return rows


def write_outputs(rows: list[dict], out: str, plot_metrics=None) -> list[str]:
    """OUT/wise_ft.csv, .md (one row per α) and .png (the chosen metrics against α); the paths written."""
    os.makedirs(out, exist_ok=True)
    keys = list(rows[0])
    paths = [os.path.join(out, f"wise_ft.{ext}") for ext in ("csv", "md", "png")]
    with open(paths[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with open(paths[1], "w") as f:
        f.write("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n")
        for row in rows:
            f.write("| " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys)
                    + " |\n")
    import matplotlib.pyplot as plt  # only for the figure
    metrics = plot_metrics or [k for k in keys if k.endswith(PLOT_SUFFIXES)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in metrics:
        ax.plot([r["alpha"] for r in rows], [r[name] for r in rows], marker="o", label=name)
    ax.set_xlabel("α (0 = --zero_shot, 1 = --fine_tuned)")
    ax.set_ylabel("metric")
    ax.set_title("WiSE-FT: θ(α) = (1 − α)·θ₀ + α·θ₁")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)
    return paths


def parse_alphas(text: str) -> list[float]:
    """'0,0.5,1' → [0.0, 0.5, 1.0]; ValueError naming --alphas for anything else."""
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise ValueError(f"--alphas {text!r}: give comma-separated numbers, e.g. 0,0.25,0.5,0.75,1") from None
    if not alphas:
        raise ValueError("--alphas is empty")
    return alphas


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("wise_ft", __doc__)
    parser.add_argument("--zero_shot", required=True, help="workdir of θ₀ (the run fine-tuning started from)")
    parser.add_argument("--fine_tuned", required=True, help="workdir of θ₁ (its evals are used)")
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--out", required=True, help="directory for wise_ft.csv / .md / .png")
    parser.add_argument("--plot", default="", help="metrics to draw, comma-separated (default: top-1, R@1, accuracy)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    setup_process("%(message)s")
    try:
        alphas = parse_alphas(args.alphas)
        config = load_config_json(args.fine_tuned)
        apply_overrides(config, split_overrides(rest))
        fine_tuned = load_run(args.fine_tuned, config=config)
        zero_shot = load_run(args.zero_shot)
        rows = sweep(zero_shot, fine_tuned, alphas, fine_tuned.config.evals)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in write_outputs(rows, args.out, [m for m in args.plot.split(",") if m] or None):
        print(f"wrote {path}")
    return 0
