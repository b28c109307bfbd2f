"""The end-of-run report: a results table (each metric beside chance) and a curves PNG."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bigvl.evaluators import chance_levels  # noqa: E402
from bigvl.parallel.storage import run_path, write_text  # noqa: E402
from bigvl.train.metrics_log import read_metrics  # noqa: E402


def results_table(metrics: dict[str, float], chance: dict[str, float]) -> str:
    """A markdown table: metric | value | chance | value / chance.

    An evaluator that measures its own chance level reports it as "X/chance": it becomes
    the chance of "X/accuracy" and is not a row of its own.
    """
    chance = {**chance, **{k[:-len("chance")] + "accuracy": v for k, v in metrics.items() if k.endswith("/chance")}}
    lines = ["| metric | value | chance | × chance |", "|---|---:|---:|---:|"]
    for key, value in metrics.items():
        if key.endswith("/chance"):
            continue
        if key in chance:
            c = chance[key]
            lines.append(f"| {key} | {value:.4f} | {c:.4f} | {value / c:.1f} |")
        elif not key.endswith("_time_s"):  # a count (e.g. pointing/queries) prints as one
            shown = f"{value:.0f}" if value > 1 and float(value).is_integer() else f"{value:.4f}"
            lines.append(f"| {key} | {shown} | | |")
    return "\n".join(lines)


def plot_curves(workdir: str, path: str) -> None:
    """Training loss and every eval metric over steps, from metrics.jsonl, to a PNG."""
    records = read_metrics(workdir)
    train = {r["step"]: r["loss"] for r in records if "loss" in r}
    evals = {}
    for r in records:
        for k, v in r.items():
            if "/" in k:
                evals.setdefault(k, {})[r["step"]] = v
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_loss.plot(list(train), list(train.values()))
    ax_loss.set(title="training loss", xlabel="step", ylabel="loss")
    for key, series in sorted(evals.items()):
        if key.endswith(("top1", "_r1", "accuracy")):
            ax_eval.plot(list(series), list(series.values()), marker="o", label=key)
    ax_eval.set(title="evaluation", xlabel="step", ylim=(0, 1))
    ax_eval.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    run_path(path).write_bytes(png.getvalue())  # a local file or an object in a bucket


def write_report(config, workdir: str, metrics: dict[str, float]) -> str:
    """Prints the results table, writes results.md and curves.png in `workdir`; returns the table."""
    table = results_table(metrics, chance_levels(config.evals))
    write_text(run_path(workdir) / "results.md", table + "\n")
    curves = run_path(workdir) / "curves.png"
    plot_curves(workdir, curves)
    print("\n" + table + f"\n\ncurves: {curves}\n")
    return table
