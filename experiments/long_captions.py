"""Long captions on the demo world: does the world's long caption say what the image shows, and which
recipe makes the text tower read it (Long-CLIP, TULIP, FIX-CLIP against recap), at equal steps.

    python -m experiments.long_captions --information        # what long captions carry (no training)
    python -m experiments.long_captions [--seeds 0,1,2] [--steps 600] [--workdir workdirs/long_captions]
    python -m experiments.long_captions --positions          # 32-token towers evaluated at 128 tokens

Runs: `recap`, `long` (Long-CLIP, reported as `long_clip`), `tulip` and `fix_clip`, each through
`experiments.ablation.run_one` (finished runs are reused), at equal compute: every arm trains STEPS
steps × batch 64 in all; `tulip`'s are its own `recap` teacher (half), stage 1 (a third of the rest)
and stage 2 (ablation.tulip_budget). Writes OUT.csv (one row per run: recipe, seed, every metric named as in
metrics.jsonl) and OUT_runs.md (mean ± sample std per recipe). `--information` writes OUT_information.md.
`--positions` trains `recap` with RoPE positions beside the learned-position `recap` run of each
seed (both at the demo's 32-token context) and evaluates both at 32 and at 128 tokens: learned
positions stretched Long-CLIP style (first 20 rows kept) or all interpolated, RoPE as is
(extrapolation) and with position interpolation (rope_train_length 32); OUT_positions.md: mean ± sample
std over the seeds, then every seed.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import os
import re

import numpy as np

from bigvl.parallel.process import setup_process

RECIPES = (("recap", "recap"), ("long", "long_clip"), ("tulip", "tulip"), ("fix_clip", "fix_clip"))  # (run, label)
SUMMARY = ("long_retrieval/t2i_r1", "long_retrieval/i2t_r1", "retrieval/t2i_r1", "retrieval/i2t_r1", "zeroshot/top1",
           "hard_negatives/accuracy")
POSITION_WORDS = ("left", "right", "top", "bottom", "middle", "centre")


# ---------------------------------------------------------------------------------------------- information
def scene_facts(scene) -> dict[str, tuple]:
    """What each caption can say about a scene, as hashable keys: `short` = the objects by colour and
    shape (what every short caption names), `long` = that plus each object's size and position cell and
    the background (what the long caption adds)."""
    from bigvl.data.world.long_captions import _position_phrase
    objects = tuple(sorted((o.colour, o.shape) for o in scene.objects))
    detailed = tuple(sorted((o.colour, o.shape, o.size, _position_phrase(o)) for o in scene.objects))
    return {"short": objects, "long": (detailed, scene.background)}


def oracle_t2i_r1(keys: list) -> float:
    """Text→image R@1 of a model that tells images apart by `key` alone (ties ranked at random):
    mean over queries of 1 / #images sharing the query's key."""
    counts = collections.Counter(keys)
    return float(np.mean([1.0 / counts[k] for k in keys]))


def truncated_facts(text: str) -> tuple:
    """The content words left in a (truncated) caption: colours, shapes, sizes, positions, backgrounds."""
    from bigvl.data.world.scene import BACKGROUND_COLOURS, COLOURS, SHAPES
    vocab = set(COLOURS) | set(SHAPES) | set(BACKGROUND_COLOURS) | {"small", "large"} | set(POSITION_WORDS)
    return tuple(sorted(w for w in re.findall(r"[a-z]+", text.lower()) if w in vocab))


def pixel_probe(world, num_train: int, num_test: int, image_size: int = 32) -> dict[str, float]:
    """Held-out accuracy of a least-squares linear probe on raw `image_size`-px pixels (one-object
    scenes) for the facts only the long caption states: background colour, size, position cell."""
    from bigvl.data.world.long_captions import _position_phrase
    from bigvl.data.world.render import render_scene
    from bigvl.data.world.scene import sample_scene

    def draw(seed, count):
        rng = np.random.default_rng(seed)
        x, labels = [], collections.defaultdict(list)
        for _ in range(count):
            scene = sample_scene(rng, 1, style=world.scene)
            image = render_scene(scene, world.image_size).astype(np.float32) / 255.0
            factor = world.image_size // image_size
            image = image.reshape(image_size, factor, image_size, factor, 3).mean(axis=(1, 3))
            x.append(image.reshape(-1))
            obj = scene.objects[0]
            labels["background"].append(scene.background)
            labels["size"].append(obj.size)
            labels["position"].append(_position_phrase(obj))
        return np.concatenate([np.stack(x), np.ones((count, 1), np.float32)], 1), labels

    x_train, y_train = draw(1, num_train)
    x_test, y_test = draw(2, num_test)
    out = {}
    for fact in y_train:
        classes = sorted(set(y_train[fact]))
        onehot = np.eye(len(classes))[[classes.index(v) for v in y_train[fact]]]
        w = np.linalg.solve(x_train.T @ x_train + 1.0 * np.eye(x_train.shape[1]), x_train.T @ onehot)
        pred = np.argmax(x_test @ w, axis=1)
        truth = np.array([classes.index(v) if v in classes else -1 for v in y_test[fact]])
        out[fact] = float(np.mean(pred == truth))
        out[f"{fact}_chance"] = float(max(collections.Counter(y_test[fact]).values()) / num_test)
    return out


def information(out: str, probe_train: int = 3000, probe_test: int = 1000) -> str:
    """The `--information` table: oracle long-caption T→I R@1 on the retrieval split by what a model
    reads, and the pixel probe. Returns the markdown written to OUT_information.md."""
    from bigvl.config import load_config
    from bigvl.data.tokenizer import Tokenizer
    from bigvl.data.world import world_params
    from bigvl.data.world.examples import generate_split

    config = load_config("demo")
    world = config.world.to_dict()
    for key in ("dir", "build"):
        world.pop(key)
    params = world_params(**world)
    tokenizer = Tokenizer(config.data.tokenizer)
    keys = collections.defaultdict(list)
    for example, scene in generate_split("retrieval", params, params.num_retrieval):
        facts = scene_facts(scene)
        keys["short caption content (colours + shapes)"].append(facts["short"])
        keys["long caption content (+ sizes, positions, background)"].append(facts["long"])
        for length in (32, 96):
            ids = tokenizer.encode([example["captions"]["long"]], length)[0]
            keys[f"long caption cut at {length} tokens (its content words)"].append(
                truncated_facts(tokenizer.decode(ids)))
    lengths = [tokenizer.count_tokens(e["captions"]["long"]) for e, _ in generate_split("retrieval", params, 200)]
    rows = [(name, oracle_t2i_r1(k), len(set(k))) for name, k in keys.items()]
    probe = pixel_probe(params, probe_train, probe_test)
    lines = ["| a model that reads | oracle long T→I R@1 | distinct keys |", "|---|---:|---:|"]
    lines += [f"| {name} | {r1:.3f} | {n} |" for name, r1, n in rows]
    lines += ["", f"Retrieval split, {params.num_retrieval} images; long captions: {np.mean(lengths):.0f} tokens on "
              f"average (max {max(lengths)}) over the first 200.", "",
              "| fact only the long caption states | linear probe on 32-px pixels | majority class |", "|---|---:|---:|"]
    lines += [f"| {fact} | {probe[fact]:.3f} | {probe[fact + '_chance']:.3f} |" for fact in ("background", "size",
                                                                                            "position")]
    lines.append(f"\nProbe: ridge least squares on raw pixels, {probe_train} / {probe_test} one-object demo scenes.")
    table = "\n".join(lines)
    with open(out + "_information.md", "w") as f:
        f.write(table + "\n")
    return table


# ---------------------------------------------------------------------------------------------- runs
def run_recipes(seeds: list[int], steps: int, workdir: str, out: str, report_only: bool = False) -> list[dict]:
    """Every (seed, recipe) through the ablation's run_one, seed-major; (re)writes OUT.csv / OUT_runs.md.
    report_only: the finished runs only, nothing trained or evaluated."""
    from experiments.ablation import run_one
    rows = []
    for seed in seeds:
        for recipe, label in RECIPES:
            run_dir = os.path.join(workdir, f"{recipe}_seed{seed}")
            if report_only and not os.path.exists(os.path.join(run_dir, "final_metrics.json")):
                continue
            result = run_one(recipe, seed, steps, run_dir, evaluate_missing=not report_only)
            metrics = {k: v for k, v in result.items() if "/" in k and isinstance(v, (int, float))}
            ordered = [k for k in SUMMARY if k in metrics] + sorted(k for k in metrics if k not in SUMMARY)
            rows.append({"recipe": label, "seed": seed, **{k: metrics[k] for k in ordered},
                         "train_time_s": result.get("train_time_s", float("nan"))})
            print(json.dumps({k: rows[-1].get(k) for k in ("recipe", "seed") + SUMMARY}), flush=True)
            write_tables(rows, steps, out)
    return rows


def write_tables(rows: list[dict], steps: int, out: str) -> None:
    """OUT.csv (every run, every metric) and OUT_runs.md (mean ± sample std of SUMMARY per recipe)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| recipe | seeds | " + " | ".join(SUMMARY) + " |", "|---|---|" + "---|" * len(SUMMARY)]
    for _, label in RECIPES:
        runs = [r for r in rows if r["recipe"] == label]
        if runs:
            cells = []
            for key in SUMMARY:
                values = np.array([r[key] for r in runs if key in r], float)
                std = values.std(ddof=1) if len(values) > 1 else 0.0
                cells.append(f"{values.mean():.3f} ± {std:.3f}")
            lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    from experiments.ablation import tulip_budget
    teacher, stage1, stage2 = tulip_budget(steps)
    lines.append(f"\nDemo world, {steps} steps × batch 64 per run (tulip: {teacher} steps of its `recap` teacher, "
                 f"{stage1} of stage 1, {stage2} of stage 2), mean ± sample std over seeds.")
    with open(out + "_runs.md", "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- positions
def evaluate_at_context(workdir: str, context: int, train_length: int = 0, keep: int = 20) -> dict[str, float]:
    """Short and long retrieval of run `workdir` with its text tower run at `context` tokens: a learned
    table stretched (pretrained.stretch_positions, its first `keep` rows kept, the rest interpolated; keep 0:
    every row linearly interpolated, new row i = old row i·(L0 − 1)/(context − 1)), RoPE positions as they
    are or, with `train_length`, interpolated."""
    import ml_collections

    from bigvl.evaluators import run_evals
    from bigvl.inference.encoder import make_encoder
    from bigvl.inference.run import load_run
    from bigvl.models import build_model
    from bigvl.models.pretrained import stretch_positions
    from bigvl.parallel.mesh import rules_from_config

    run = load_run(workdir)
    config = ml_collections.ConfigDict(run.config.to_dict())
    params = dict(run.params)
    config.model.text.context_length = context
    if config.model.text.get("pos_emb", "learned") == "rope":
        config.model.text.rope_train_length = train_length
    else:
        table = np.asarray(params["text"]["pos_embedding"])
        if context != table.shape[0] and keep:
            params["text"] = {**params["text"], "pos_embedding": stretch_positions(table, context, keep=keep)}
        elif context != table.shape[0]:
            where = np.arange(context) * (table.shape[0] - 1) / (context - 1)
            columns = [np.interp(where, np.arange(table.shape[0]), table[:, d]) for d in range(table.shape[1])]
            params["text"] = {**params["text"], "pos_embedding": np.stack(columns, 1).astype(table.dtype)}
    model = build_model(config.model)
    encoder = make_encoder(model, params, run.encoder.tokenizer, config.model, run.encoder.mesh,
                           rules_from_config(config.sharding_rules), config.evals.batch_size)
    evals = config.evals
    for name in ("zeroshot", "hard_negatives", "pointing"):
        evals[name].split = ""
    metrics = run_evals(encoder, evals)
    return {k: metrics[k] for k in ("retrieval/t2i_r1", "long_retrieval/t2i_r1")}


POSITION_CASES = (("learned, Long-CLIP stretch (first 20 rows kept)", "learned", 0, 20),
                  ("learned, linear interpolation of all rows", "learned", 0, 0), ("RoPE (extrapolated)", "rope", 0, 20),
                  ("RoPE + position interpolation (train length 32)", "rope", 32, 20))  # (name, run, train_length, keep)
POSITION_KEYS = ("retrieval/t2i_r1", "long_retrieval/t2i_r1")


def positions_of_seed(seed: int, steps: int, workdir: str) -> dict[str, dict[str, list[float]]]:
    """One seed of `--positions`: trains (or reuses) its learned and RoPE `recap` runs; returns, per case
    name, per key of POSITION_KEYS, [value @32, value @128]. Cached in the RoPE run's positions.json."""
    from experiments.ablation import run_one
    runs = {"learned": os.path.join(workdir, f"recap_seed{seed}"), "rope": os.path.join(workdir, f"recap_rope_seed{seed}")}
    run_one("recap", seed, steps, runs["learned"])
    run_one("recap", seed, steps, runs["rope"], overrides=("model.text.pos_emb=rope",))
    cache = os.path.join(runs["rope"], "positions.json")
    if os.path.exists(cache):
        with open(cache) as f:
            return json.load(f)
    at32, result = {}, {}
    for name, run, train_length, keep in POSITION_CASES:
        at32[run] = at32.get(run) or evaluate_at_context(runs[run], 32)
        at128 = evaluate_at_context(runs[run], 128, train_length, keep)
        result[name] = {key: [at32[run][key], at128[key]] for key in POSITION_KEYS}
        print(json.dumps({"seed": seed, "case": name, **result[name]}), flush=True)
    with open(cache, "w") as f:
        json.dump(result, f, indent=1)
    return result


def positions(seeds: list[int], steps: int, workdir: str, out: str) -> str:
    """The `--positions` table (see the module docstring): mean ± sample std over `seeds` of each value at
    32 and 128 tokens and of its change, then one table per seed; returns the markdown."""
    per_seed = {seed: positions_of_seed(seed, steps, workdir) for seed in seeds}
    head = ["| positions | short T→I R@1 @32 | @128 | change | long T→I R@1 @32 | @128 | change |",
            "|---|---:|---:|---:|---:|---:|---:|"]

    def cell(values: list[float], sign: bool = False) -> str:
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        return (f"{np.mean(values):+.3f}" if sign else f"{np.mean(values):.3f}") + (f" ± {std:.3f}" if len(values) > 1 else "")

    def table(results: list[dict]) -> list[str]:
        lines = list(head)
        for name, *_ in POSITION_CASES:
            cells = []
            for key in POSITION_KEYS:
                pairs = [r[name][key] for r in results]
                cells += [cell([a for a, _ in pairs]), cell([b for _, b in pairs]), cell([b - a for a, b in pairs], True)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    lines = table(list(per_seed.values()))
    lines.append(f"\n`recap`, {steps} steps at the demo's 32-token context, seeds {', '.join(map(str, seeds))}; "
                 "evaluated at 32 and at 128 tokens; mean ± sample std over seeds.")
    for seed, result in per_seed.items():
        lines += ["", f"Seed {seed}:", ""] + table([result])
    text = "\n".join(lines)
    with open(out + "_positions.md", "w") as f:
        f.write(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.long_captions", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--workdir", default="workdirs/long_captions")
    parser.add_argument("--out", default="docs/results/long_captions")
    parser.add_argument("--information", action="store_true", help="only the world measurement (no training)")
    parser.add_argument("--positions", action="store_true", help="only the 32 → 128 token comparison")
    parser.add_argument("--report-only", action="store_true", help="write the tables from the finished runs only")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.information:
        print(information(args.out))
    elif args.positions:
        print(positions(seeds, args.steps, args.workdir, args.out))
    else:
        run_recipes(seeds, args.steps, args.workdir, args.out, args.report_only)
        with open(args.out + "_runs.md") as f:
            print(f.read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
