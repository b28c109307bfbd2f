"""The recaption experiment's outputs: OUT.csv, OUT.md (table, gap test, caption quality, compute), OUT.png.

`experiments.recaption_experiment` calls `write_outputs`; the statistics are plain numpy:
mean and sample std (ddof = 1) over seeds per arm, pooled std of two arms
sqrt((s_a² + s_b²) / 2) (equal seed counts), and "gen beats alt" when
mean_gen − mean_alt > 2 · pooled std on T→I R@1.
"""
from __future__ import annotations

import csv
import os

import numpy as np

METRICS = (("retrieval/t2i_r1", "T→I R@1"), ("retrieval/i2t_r1", "I→T R@1"),
           ("zeroshot/top1", "zero-shot top-1"), ("hard_negatives/accuracy", "hard-neg acc"))
KEY = "retrieval/t2i_r1"  # the metric of the gap test
ARM_ORDER = ("alt", "gen", "oracle")


def summarize(rows: list[dict]) -> dict[str, dict]:
    """{arm: {"seeds": n, metric: (mean, std), "train_time_s": (mean, std), "train_flops": (mean, std)}}."""
    out = {}
    for arm in ARM_ORDER:
        runs = [r for r in rows if r["arm"] == arm]
        if not runs:
            continue
        entry = {"seeds": len(runs)}
        for key in [k for k, _ in METRICS] + ["train_time_s", "train_flops"]:
            values = np.array([r[key] for r in runs if key in r], float)
            if len(values):
                entry[key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
        out[arm] = entry
    return out


def pooled_std(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Pooled sample std of two arms with equal seed counts: sqrt((s_a² + s_b²) / 2)."""
    return float(np.sqrt((a[1] ** 2 + b[1] ** 2) / 2))


def gap_test(summary: dict, key: str = KEY) -> dict:
    """gen − alt and oracle − gen on `key`, each in pooled stds; passed = gen − alt > 2 pooled std."""
    out = {}
    if "gen" in summary and "alt" in summary and key in summary["gen"] and key in summary["alt"]:
        g, a = summary["gen"][key], summary["alt"][key]
        pooled = pooled_std(g, a)
        out.update(gen_minus_alt=g[0] - a[0], pooled_std_gen_alt=pooled,
                   passed=bool(g[0] - a[0] > 2 * pooled) if summary["gen"]["seeds"] > 1 else None)
    if "gen" in summary and "oracle" in summary and key in summary["oracle"]:
        g, o = summary["gen"][key], summary["oracle"][key]
        out.update(oracle_minus_gen=o[0] - g[0], pooled_std_oracle_gen=pooled_std(o, g))
    return out


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _flops(x) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.3g}"


def markdown(summary: dict, test: dict, quality: dict, compute: dict, settings: dict, wall_s: float) -> str:
    lines = ["# Recaptioning loop on the scarce-caption world", "",
             f"World: configs/demo.py's, {settings['caption_fraction']:g} of the train records captioned; "
             f"CLIP: configs/recipe_demo.py model, {settings['clip_steps']} steps per run; captioner: "
             f"configs/coca_demo.py, {settings['captioner_steps']} steps on the captioned records only.", "",
             "| arm | seeds | " + " | ".join(label for _, label in METRICS) + " | train s/run |",
             "|" + "---|" * (len(METRICS) + 3)]
    for arm, e in summary.items():
        cells = [f"{e[k][0]:.3f} ± {e[k][1]:.3f}" if k in e else "n/a" for k, _ in METRICS]
        lines.append(f"| {arm} | {e['seeds']} | " + " | ".join(cells) + f" | {e['train_time_s'][0]:.0f} |")
    lines += ["", "mean ± sample std over seeds. alt: alt-text only; gen: `mix` over the generated captions "
              "(true captions kept where they exist); oracle: `mix` over the full world's true `short`.", ""]
    if "gen_minus_alt" in test:
        verdict = {True: "**yes**", False: "**no**", None: "n/a (one seed)"}[test["passed"]]
        lines.append(f"- gen − alt on T→I R@1: {test['gen_minus_alt']:+.3f} (pooled std "
                     f"{test['pooled_std_gen_alt']:.3f}); gen beats alt by > 2 pooled std: {verdict}")
    if "oracle_minus_gen" in test:
        lines.append(f"- oracle − gen on T→I R@1 (gap to the oracle): {test['oracle_minus_gen']:+.3f} "
                     f"(pooled std {test['pooled_std_oracle_gen']:.3f})")
    lines += ["", "## Generated captions against the held-out truth", "",
              f"On the {quality.get('uncaptioned', 0)} uncaptioned train records, against the full world's `short`:", "",
              "| captions | CIDEr-D | BLEU-4 |", "|---|---|---|",
              f"| generated (greedy) | {_fmt(quality.get('gen_cider_d'))} | {_fmt(quality.get('gen_bleu4'))} |",
              f"| most frequent captioned-record caption | {_fmt(quality.get('baseline_cider_d'))} | "
              f"{_fmt(quality.get('baseline_bleu4'))} |", "",
              f"Exact matches of the truth: {_fmt(quality.get('gen_exact_match'))}; captioner CIDEr-D on the "
              f"held-out retrieval split: {_fmt(compute.get('captioner_cider_d_heldout'))}.", "",
              "## Compute", "", "| stage | seconds | model FLOPs |", "|---|---|---|",
              f"| captioner training ({compute['captioner_steps']} steps) | {_fmt(compute.get('captioner_train_s'), 0)} "
              f"| {_flops(compute.get('captioner_train_flops'))} |",
              f"| recaption ({compute.get('recaption_decoded')} captions decoded) | "
              f"{_fmt(compute.get('recaption_s'), 0)} | — |"]
    for arm, e in summary.items():
        lines.append(f"| CLIP `{arm}` (per run) | {e['train_time_s'][0]:.0f} | "
                     f"{_flops(e.get('train_flops', (None,))[0])} |")
    lines += ["", f"Degenerate / empty generated captions: {compute.get('recaption_degenerate')} / "
              f"{compute.get('recaption_empty')} (see the recaption manifest). Timings were taken on a shared, "
              f"loaded machine. Wall time of this command: {wall_s:.0f} s (finished stages are reused).", ""]
    return "\n".join(lines)


def bar_chart(summary: dict, path: str) -> None:
    import matplotlib  # local: the Agg backend is chosen before pyplot loads
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(summary), 1)
    x = np.arange(len(METRICS))
    for i, (arm, e) in enumerate(summary.items()):
        means = [e[k][0] if k in e else np.nan for k, _ in METRICS]
        stds = [e[k][1] if k in e else 0.0 for k, _ in METRICS]
        ax.bar(x + i * width, means, width, yerr=stds, capsize=3, label=arm)
    ax.set_xticks(x + width * (len(summary) - 1) / 2, [label for _, label in METRICS])
    ax.set_ylabel("score")
    ax.set_title("CLIP on alt-text, generated recaptions and true captions (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(rows: list[dict], quality: dict, compute: dict, settings: dict, out: str, wall_s: float) -> str:
    """Writes OUT.csv (one row per CLIP run), OUT.md and OUT.png; returns the markdown."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows)
    text = markdown(summary, gap_test(summary), quality, compute, settings, wall_s)
    with open(out + ".md", "w") as f:
        f.write(text)
    bar_chart(summary, out + ".png")
    return text
