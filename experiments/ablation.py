"""The recaption ablation: every recipe on the demo world at equal compute, several seeds.

    python -m experiments.ablation [--recipes alt,mix,...] [--seeds 0,1,2] [--steps 250]
                             [--workdir workdirs/ablation] [--out docs/results/ablation_runs] [--report-only]

Each (recipe, seed) trains configs/recipe_demo.py:RECIPE with `seed` for the same steps
and batch of images (equal images seen and optimizer steps; multi-text recipes spend
more text-tower FLOPs, reported beside them) and is evaluated once at the end. Runs that
finished (final_metrics.json in their workdir) are reused, so a killed ablation goes on
where it stopped; a finished run that lacks a metric (an evaluator added since) is
evaluated from its last checkpoint. Writes OUT.csv (one row per run), OUT.md (mean ± std per recipe) and
OUT.png (bars with std error bars), and prints one JSON line per run. `--append` instead appends the
rows to the OUT.csv there (others' rows kept; OUT.md and OUT.png untouched); `--against BASE` then prints
each recipe's gap to the BASE rows of that file in pooled std, marking those beyond 2 (the bar's rule).

`distill` and `distill_mix` first train their teacher once (the `recap` recipe for 500
steps, seed 100, in WORKDIR/teacher_recap500) and write the world's train shards with its
embeddings (configs/recipe_demo.py `teacher_shards_dir`); the students then train 250
steps like every other recipe.

`tulip` is three runs in one budget (equal compute: their steps add up to STEPS, all at batch 64):
its own teacher, `recap` with the same seed for half the steps (WORKDIR/tulip_seedN_teacher), then
`tulip_distill` (TULIP stage 1, a third of the rest, in WORKDIR/tulip_seedN_distill) from that teacher
on the train shards with its windowed short and long caption embeddings (written in the teacher's
workdir), then `tulip` (the other two thirds) from the stage-1 run (tulip_budget). Given a finished
teacher run (run_one's `teacher`), it fine-tunes that one instead, with all STEPS for its two stages.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import time

import numpy as np

from bigvl.config import load_config, validate
from bigvl.config.overrides import apply_overrides
from bigvl.data.pipeline import resolve_paths
from bigvl.data.world import ensure_config_world
from bigvl.evaluators import entries, run_evals
from bigvl.inference.run import load_run
from bigvl.inference.teacher_embeddings import add_teacher_embeddings
from bigvl.parallel.process import setup_process
from bigvl.recipes import RECIPES
from bigvl.train.loop import train_and_evaluate
from experiments.recaption_report import pooled_std

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the clone (configs/ beside experiments/)
METRICS = (("zeroshot/top1", "zero-shot top-1"), ("retrieval/t2i_r1", "T→I R@1"),
           ("retrieval/i2t_r1", "I→T R@1"), ("long_retrieval/t2i_r1", "long T→I R@1"),
           ("long_retrieval/i2t_r1", "long I→T R@1"), ("hard_negatives/accuracy", "hard-neg acc"),
           ("pointing/accuracy", "pointing acc"))


# `distill`: the teacher whose stored embeddings the student distils from: the recap
# recipe trained twice as long, with a seed no student uses.
TEACHER_RECIPE, TEACHER_STEPS, TEACHER_SEED = "recap", 500, 100


def teacher_workdir_of(root: str, teacher: str = "") -> str:
    """The teacher run: `teacher` if given (a finished run), else ROOT/teacher_recap500."""
    return teacher or os.path.join(root, f"teacher_{TEACHER_RECIPE}{TEACHER_STEPS}")


def prepare_teacher_shards(config, root: str, windowed: bool = False, teacher: str = "") -> dict:
    """Trains the teacher (once, in ROOT/teacher_recap500; or uses the finished run `teacher`) and
    writes the world's train shards with its embeddings where the `distill` config reads them (once);
    returns the teacher's metrics. windowed (TULIP): only the short and long captions, long ones as
    pooled overlapping windows. Raises ValueError when the shards there came from another teacher."""
    teacher_workdir = teacher_workdir_of(root, teacher)
    metrics = run_one(TEACHER_RECIPE, TEACHER_SEED, TEACHER_STEPS, teacher_workdir)
    out_dir = os.path.dirname(os.path.expanduser(config.data.train_paths[0]))
    stats = os.path.join(out_dir, "teacher.json")
    if os.path.exists(stats):
        with open(stats) as f:
            made_by = json.load(f)["teacher"]
        if made_by != os.path.abspath(teacher_workdir):
            raise ValueError(f"{out_dir} holds embeddings of teacher {made_by}, not {teacher_workdir}: remove it")
    else:
        world_train = os.path.join(os.path.expanduser(config.world.dir), "train-*.array_record")
        add_teacher_embeddings(teacher_workdir, resolve_paths([world_train]), out_dir,
                               ["short", "long"] if windowed else None, windowed=windowed)
    return metrics


def add_missing_metrics(recipe: str, steps: int, workdir: str, result: dict) -> dict:
    """Evaluates a finished run's last checkpoint with the evaluators whose METRICS it lacks
    (one added after it trained); updates its final_metrics.json and returns the result."""
    missing = {key.split("/")[0] for key, _ in METRICS if key not in result}  # the evals entry of each prefix
    if not missing:
        return result
    evals = load_config(f"recipe_demo:{recipe},steps={steps}").evals
    for name, _, _ in entries(evals):
        if name not in missing:
            evals[name].split = ""  # off
    metrics = run_evals(load_run(workdir).encoder, evals)
    result = {**result, **{k: v for k, v in metrics.items() if k not in result}}
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def tulip_budget(steps: int, own_teacher: bool = True) -> tuple[int, int, int]:
    """TULIP's `steps` split as (teacher, stage 1, stage 2): its own `recap` teacher half of them, stage 1
    a third of the rest, stage 2 the remainder (sum = steps). own_teacher False (a finished teacher
    given): (0, steps // 3, the rest)."""
    teacher = steps // 2 if own_teacher else 0
    return teacher, (steps - teacher) // 3, steps - teacher - (steps - teacher) // 3


def run_one(recipe: str, seed: int, steps: int, workdir: str, evaluate_missing: bool = True,
            overrides: tuple[str, ...] = (), teacher: str = "") -> dict:
    """Trains and evaluates one recipe/seed (or reads its finished result, evaluating what it
    lacks unless `evaluate_missing` is False); returns its metrics. overrides: "key=value" config
    changes on top of the recipe (e.g. "model.text.pos_emb=rope"). teacher: the distilling recipes'
    teacher run ("" = ROOT/teacher_recap500, trained here once; `tulip`: its own, in its budget)."""
    done = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(done):
        root, init_workdir, own_steps = os.path.dirname(os.path.abspath(workdir)), "", steps
        if recipe == "tulip":  # teacher and stage 1 first, in the same budget; this run starts from stage 1
            teacher_steps, stage1, own_steps = tulip_budget(steps, own_teacher=not teacher)
            if not teacher:
                teacher = os.path.abspath(workdir + "_teacher")
                run_one(TEACHER_RECIPE, seed, teacher_steps, teacher, evaluate_missing=False)
            init_workdir = workdir + "_distill"
            run_one("tulip_distill", seed, stage1, init_workdir, evaluate_missing=False, teacher=teacher)
        config = load_config(f"recipe_demo:{recipe},steps={own_steps}")
        with config.unlocked():
            config.seed = seed
            config.progress_bar = False
        apply_overrides(config, overrides)
        validate(config)
        ensure_config_world(config.world)
        if recipe == "tulip_distill" and teacher:  # the windowed shards of this teacher, beside it
            with config.unlocked():
                config.data.train_paths = [os.path.join(teacher, "windowed_shards", "train-*.array_record")]
        if recipe.startswith("distill") or recipe == "tulip_distill":
            prepare_teacher_shards(config, root, windowed=recipe == "tulip_distill", teacher=teacher)
        if recipe == "tulip_distill":
            init_workdir = teacher_workdir_of(root, teacher)
        if init_workdir:
            with config.unlocked():
                config.init.workdir = init_workdir
        t0 = time.perf_counter()
        train_and_evaluate(config, workdir)
        with open(done) as f:  # the trainer's final metrics, with step and num_params
            result = {**json.load(f), "train_time_s": time.perf_counter() - t0}
        with open(done, "w") as f:
            json.dump(result, f, indent=2)
    else:
        with open(done) as f:
            result = json.load(f)
    return add_missing_metrics(recipe, steps, workdir, result) if evaluate_missing else result


def summarize(rows: list[dict], recipes: list[str]) -> list[dict]:
    """Mean and sample std (ddof=1) of each metric per recipe."""
    out = []
    for recipe in recipes:
        runs = [r for r in rows if r["recipe"] == recipe]
        if not runs:
            continue
        entry = {"recipe": recipe, "seeds": len(runs)}
        for key, _ in METRICS + (("train_time_s", ""),):
            values = np.array([r[key] for r in runs if key in r], float)
            entry[key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
        out.append(entry)
    return out


def markdown_table(summary: list[dict], steps: int, batch: int) -> str:
    """The mean ± std table, one row per recipe."""
    head = "| recipe | seeds | " + " | ".join(label for _, label in METRICS) + " | train s/run |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for e in summary:
        cells = [f"{e[k][0]:.3f} ± {e[k][1]:.3f}" for k, _ in METRICS]
        lines.append(f"| {e['recipe']} | {e['seeds']} | " + " | ".join(cells) + f" | {e['train_time_s'][0]:.0f} |")
    lines.append("")
    lines.append(f"Demo world, {steps} steps × batch {batch} images per run, mean ± sample std over seeds.")
    return "\n".join(lines)


def append_rows(rows: list[dict], path: str) -> None:
    """Appends `rows` to the CSV `path` under its own header, read right before writing (others append to
    the same file); ValueError naming the first (recipe, seed) already there."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, have = reader.fieldnames, {(r["recipe"], r["seed"]) for r in reader}
    for row in rows:
        if (row["recipe"], str(row["seed"])) in have:
            raise ValueError(f"{path}: recipe {row['recipe']!r} seed {row['seed']} is already there")
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=header, extrasaction="ignore").writerows(rows)


def gap_lines(rows: list[dict], recipes: list[str], baseline: str) -> list[str]:
    """Per recipe, one line: its mean − `baseline`'s of every METRIC, in pooled std
    (recaption_report.pooled_std), "> 2" where the gap exceeds 2 pooled std (the bar's rule)."""
    summary = {e["recipe"]: e for e in summarize(rows, [baseline] + recipes)}
    lines = []
    for recipe in recipes:
        cells = []
        for key, label in METRICS:
            ours, base = summary[recipe][key], summary[baseline][key]
            pooled = pooled_std(ours, base)
            z = (ours[0] - base[0]) / pooled if pooled else float("nan")
            cells.append(f"{label} {ours[0] - base[0]:+.3f} ({z:+.1f} std{', > 2' if abs(z) > 2 else ''})")
        lines.append(f"Gaps {recipe} − {baseline}: " + ", ".join(cells) + ".")
    return lines


def bar_chart(summary: list[dict], path: str) -> None:
    """Grouped bars (one group per metric, one bar per recipe) with std error bars."""
    import matplotlib  # local: the Agg backend is chosen before pyplot loads
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(len(summary), 1)
    x = np.arange(len(METRICS))
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours (the default cycle has 10)
    for i, e in enumerate(summary):
        means = [e[k][0] for k, _ in METRICS]
        stds = [e[k][1] for k, _ in METRICS]
        ax.bar(x + i * width, means, width, yerr=stds, capsize=2, label=e["recipe"],
               color=colours[(2 * i) % 20 + (2 * i) // 20])
    ax.set_xticks(x + width * (len(summary) - 1) / 2, [label for _, label in METRICS])
    ax.set_ylabel("score")
    ax.set_title("Recaption recipes on the demo world (mean ± std over seeds)")
    ax.legend(ncol=len(summary), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(rows: list[dict], recipes: list[str], steps: int, batch: int, out: str, wall_s: float) -> str:
    """(Re)writes OUT.csv, OUT.md and OUT.png from the runs so far; returns the markdown table."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows, recipes)
    table = markdown_table(summary, steps, batch)
    with open(out + ".md", "w") as f:
        f.write(table + f"\nWall time of this ablation command: {wall_s:.0f} s (finished runs are reused).\n")
    bar_chart(summary, out + ".png")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--workdir", default="workdirs/ablation")
    parser.add_argument("--out", default="docs/results/ablation_runs")
    parser.add_argument("--report-only", action="store_true",
                        help="write the outputs from the finished runs only; train nothing")
    parser.add_argument("--append", action="store_true", help="append the rows to OUT.csv (OUT.md, OUT.png untouched)")
    parser.add_argument("--against", default="", help="with --append: print the gaps to this recipe's rows in OUT.csv")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)  # before JAX starts, as bigvl.main runs
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"--recipes: {unknown[0]!r} is not one of {RECIPES}")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    batch = load_config("recipe_demo:alt").batch_size
    t0, rows = time.perf_counter(), []
    for seed in seeds:  # seed-major: a partial ablation already has every recipe
        for recipe in recipes:
            if args.report_only and not os.path.exists(
                    os.path.join(args.workdir, f"{recipe}_seed{seed}", "final_metrics.json")):
                continue
            result = run_one(recipe, seed, args.steps, os.path.join(args.workdir, f"{recipe}_seed{seed}"),
                             evaluate_missing=not args.report_only)
            row = {"recipe": recipe, "seed": seed, **{k: result[k] for k, _ in METRICS if k in result},
                   "train_time_s": result.get("train_time_s", float("nan"))}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.append:
                table = write_outputs(rows, recipes, args.steps, batch, args.out, time.perf_counter() - t0)
    if not rows:
        parser.error(f"no finished run in {args.workdir}")
    if args.append:
        append_rows(rows, args.out + ".csv")
        with open(args.out + ".csv", newline="") as f:
            every = list(csv.DictReader(f))
        shown = ([args.against] if args.against else []) + recipes
        print(markdown_table(summarize(every, shown), args.steps, batch))
        print("\n".join(gap_lines(every, recipes, args.against) if args.against else []))
        print(f"appended {len(rows)} rows to {args.out}.csv")
        return 0
    print(table)
    print(f"wrote {args.out}.csv, {args.out}.md, {args.out}.png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
