"""Curation before training on a world made for it: none vs MetaCLIP balancing vs score filtering vs both.

    python -m experiments.curation [--seeds 0,1,2] [--steps 250] [--workdir workdirs/curation_v2]
                                   [--out docs/results/curation] [--t T] [--keep_top 0.5]

The world (bigvl/data/world/curation_variant.py, its defaults): the demo world's scenes with a
long tail of classes over every object of an image, alt-texts drawn again with 10 % wrong
attributes, spam naming no class or a head class, and near-duplicate head images. Every run trains configs/demo.py:alt (web
alt-texts only, where curation matters) on it for the same steps and batch, with its own seed,
on the train shards of its recipe:
  none      the world's shards as they are (scored, nothing dropped),
  metaclip  `bigvl curate --metadata world_metadata.txt --balance_t T` (MetaCLIP's Algorithm 1;
            T by default the t whose tail entries hold the share of matches that t = 20k leaves
            on the tail at 400M scale: metaclip.t_for_tail_share(counts, TAIL_SHARE_400M)),
  filter    `bigvl curate --keep_top Q --score_field alt` (top Q by the alt-text's CLIP score),
  both      the two together.
The scores come from a scorer trained once on the uncurated world (seed 100, 500 steps) through
`bigvl score_captions --fields alt`. Finished runs (final_metrics.json) are reused. Writes
OUT.csv (one row per run: recipe, seed, then the metrics as named in metrics.jsonl) and OUT_runs.md
(mean ± sample std per recipe, the records each recipe kept, and each recipe's difference from
`none` in units of the pooled std), and prints each recipe's composition before training: spam share,
planted copies, the share of the 5 largest classes and the smallest and largest class (first object).
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
from bigvl.data.curate.metaclip import TAIL_SHARE_400M, EntryMatcher, read_metadata, t_for_tail_share
from bigvl.data.curate.options import CurateOptions
from bigvl.data.curate.pipeline import curate
from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.data.world import ensure_config_world
from bigvl.data.world.curation_variant import SPAM_WORDS, build_curation_world
from bigvl.inference.caption_scores import score_captions
from bigvl.inference.run import load_run
from bigvl.parallel.process import setup_process
from bigvl.train.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "demo.py")
METADATA = os.path.join(ROOT, "bigvl", "data", "curate", "world_metadata.txt")
RECIPES = ("none", "metaclip", "filter", "both")
SCORER_SEED, SCORER_STEPS = 100, 500
HEADLINE = ("zeroshot/balanced_accuracy", "zeroshot/top1", "retrieval/t2i_r1", "retrieval/i2t_r1",
            "hard_negatives/accuracy")


def run_config(world: str, train_paths: list[str], seed: int, steps: int):
    """configs/demo.py:alt on the curation world: `train_paths`, `seed`, `steps`, evaluated once at the end."""
    from configs.demo import use_world  # the clone's config helpers (experiments run from a clone)
    config = load_config(CONFIG + ":alt")
    with config.unlocked():
        use_world(config, world)
        config.world.build = False
        config.data.train_paths = train_paths
        config.seed, config.total_steps = seed, steps
        config.eval_steps = config.ckpt_steps = steps
        config.progress_bar, config.report = False, False
    validate(config)
    return config


def train(world: str, train_paths: list[str], seed: int, steps: int, workdir: str) -> dict:
    """Trains one run (or reads its finished result); returns final_metrics.json with train_time_s."""
    done = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(done):
        t0 = time.perf_counter()
        train_and_evaluate(run_config(world, train_paths, seed, steps), workdir)
        with open(done) as f:
            result = {**json.load(f), "train_time_s": round(time.perf_counter() - t0, 1)}
        with open(done, "w") as f:
            json.dump(result, f, indent=2)
    with open(done) as f:
        return json.load(f)


def composition(paths: list[str]) -> dict:
    """{records, spam_share, planted_copies, top5_share, class_min, class_max} of shards of the curation
    world: the share of records whose alt-text is the variant's spam (it opens with a SPAM_WORDS
    phrase), of planted near-copies (ids ending /dupK), of the 5 largest classes (first object's colour
    and shape), and the records of the smallest and the largest class."""
    records = spam = copies = 0
    classes: dict[str, int] = {}
    for path in paths:
        for data in read_records(path):
            record = decode_example(data)
            records += 1
            spam += record["alt_text"].startswith(SPAM_WORDS)
            copies += "/dup" in record["id"]
            first = record["extras"]["scene"]["objects"][0]
            cls = f"{first['colour']} {first['shape']}"
            classes[cls] = classes.get(cls, 0) + 1
    sizes = sorted(classes.values(), reverse=True) or [0]
    return {"records": records, "spam_share": spam / max(records, 1), "planted_copies": copies / max(records, 1),
            "top5_share": sum(sizes[:5]) / max(records, 1), "class_min": sizes[-1], "class_max": sizes[0]}


def entry_counts(paths: list[str], entries: list[str]) -> np.ndarray:
    """int [M]: the records of `paths` whose alt-text matches each entry (MetaCLIP's count(entry))."""
    matcher, counts = EntryMatcher(entries), np.zeros(len(entries), np.int64)
    for path in paths:
        for data in read_records(path):
            counts[matcher(decode_example(data)["alt_text"])] += 1
    return counts


def prepare(t: float | None, keep_top: float, root: str) -> tuple[str, dict[str, list[str]], dict]:
    """Builds the worlds, the scorer and the curated shards (t None: from the tail share, module
    docstring); returns (world dir, {recipe: train paths}, {recipe: curate manifest summary})."""
    from configs.demo import world_dir  # the clone's config helpers (experiments run from a clone)
    base_config = load_config(CONFIG)
    with base_config.unlocked():
        base_config.world.num_train = 60000
        base_config.world.dir = world_dir(0, "curation_base")
    base = ensure_config_world(base_config.world)
    world = str(build_curation_world(base, world_dir(0, "curation_v2")))
    raw = resolve_paths([os.path.join(world, "train-*.array_record")])
    scorer = os.path.join(root, f"scorer_seed{SCORER_SEED}")
    train(world, raw, SCORER_SEED, SCORER_STEPS, scorer)
    scored_dir = os.path.join(world, "scored")
    if not os.path.exists(os.path.join(scored_dir, "score_manifest.json")):
        score_captions(load_run(scorer), raw, scored_dir, ["alt"], workdir=scorer)
    scored = [os.path.join(scored_dir, os.path.basename(p)) for p in raw]
    entries = tuple(read_metadata(METADATA))
    counts = entry_counts(scored, list(entries))
    if t is None:
        t = t_for_tail_share(counts, TAIL_SHARE_400M)
    print(json.dumps({"entry_counts": dict(zip(entries, counts.tolist())), "t": t}), flush=True)
    options = {"metaclip": CurateOptions(entries=entries, balance_t=t),
               "filter": CurateOptions(keep_fraction=keep_top),
               "both": CurateOptions(entries=entries, balance_t=t, keep_fraction=keep_top)}
    paths, summaries = {"none": scored}, {}
    for recipe, opts in options.items():
        out = os.path.join(world, f"curated_{recipe}_t{t:g}_q{keep_top:g}")
        manifest_path = os.path.join(out, "manifest.json")
        if os.path.exists(manifest_path):
            with open(manifest_path) as f:
                manifest = json.load(f)
        else:
            manifest = curate(scored, out, opts)
        summaries[recipe] = {k: manifest[k] for k in ("records", "kept", "dropped", "wall_seconds")}
        paths[recipe] = [os.path.join(out, os.path.basename(p)) for p in raw]
    for recipe, shards in paths.items():  # what each recipe's shards hold (the page's spam / copies columns)
        summaries.setdefault(recipe, {}).update(composition(shards))
    return world, paths, summaries


def pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt of the mean of the two sample variances (equal group sizes)."""
    return float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))


def write_outputs(rows: list[dict], summaries: dict, out: str, steps: int) -> str:
    """Writes OUT.csv (every run); returns the markdown tables (main writes them to OUT_runs.md)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    keys = ["recipe", "seed"] + sorted({k for r in rows for k in r if "/" in k})
    with open(out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| recipe | records kept | spam share | planted copies | top-5 class share | smallest / largest class | "
             + " | ".join(HEADLINE) + " |", "|" + "---|" * (len(HEADLINE) + 6)]
    values = {r: {k: np.array([row[k] for row in rows if row["recipe"] == r]) for k in HEADLINE} for r in RECIPES}
    for recipe in RECIPES:
        if not len(values[recipe][HEADLINE[0]]):
            continue
        s = summaries.get(recipe, {})
        kept = s.get("records", "")
        cells = [f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}" for v in values[recipe].values()]
        lines.append(f"| {recipe} | {kept} | {s.get('spam_share', 0):.1%} | {s.get('planted_copies', 0):.1%} | "
                     f"{s.get('top5_share', 0):.1%} | {s.get('class_min', '')} / {s.get('class_max', '')} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"{steps} steps × batch 64 per run, mean ± sample std over {len(rows) // len(RECIPES)} seeds.", "",
              "| recipe vs none | " + " | ".join(HEADLINE) + " |", "|" + "---|" * (len(HEADLINE) + 1)]
    for recipe in RECIPES[1:]:
        cells = []
        for k in HEADLINE:
            a, b = values[recipe][k], values["none"][k]
            if len(a) > 1 and len(b) > 1:
                cells.append(f"{a.mean() - b.mean():+.3f} ({(a.mean() - b.mean()) / max(pooled_std(a, b), 1e-9):+.1f} σ)")
            else:
                cells.append("")
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.curation", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--t", type=float, default=None,
                        help="MetaCLIP's t on this world (default: the 400M tail share's t, module docstring)")
    parser.add_argument("--keep_top", type=float, default=0.5, help="the score filter's q")
    parser.add_argument("--workdir", default="workdirs/curation_v2")
    parser.add_argument("--out", default="docs/results/curation")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    t0 = time.perf_counter()
    world, paths, summaries = prepare(args.t, args.keep_top, args.workdir)
    print(json.dumps({"curation": summaries}), flush=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        for recipe in RECIPES:
            result = train(world, paths[recipe], seed, args.steps, os.path.join(args.workdir, f"{recipe}_seed{seed}"))
            rows.append({"recipe": recipe, "seed": seed, **result})
            print(json.dumps({"recipe": recipe, "seed": seed, **{k: result.get(k) for k in HEADLINE}}), flush=True)
            table = write_outputs(rows, summaries, args.out, args.steps)
            with open(args.out + "_runs.md", "w") as f:
                f.write(table + "\n")
    print(table)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
