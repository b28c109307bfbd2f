"""The recaptioning loop on a scarce-caption world: captioner → recaption → CLIP, against alt-text and the oracle.

    python -m experiments.recaption_experiment [--seeds 0,1,2] [--clip_steps 250] [--captioner_steps 1000]
        [--caption_fraction 0.1] [--workdir workdirs/recaption_experiment] [--out docs/results/recaption_experiment_runs]
        [--world_dir DIR --world num_train=256,...] [--set key=value,...]

Stages (each finished one is reused, so a killed experiment goes on where it stopped):
1. worlds: configs/demo.py's world with `world.caption_fraction` = F (scarce: only F of the
   train records carry captions) and the same world at 1.0 (the truth for the rest: same
   images, alt-texts and tokenizer at the same record ids); `--world` overrides world keys.
2. captioned subset: the scarce world's captioned train records, written to
   WORKDIR/captioned_shards (the captioner sees nothing else).
3. captioner: configs/coca_demo.py (CoCa, contrastive + captioning on `short`; CoCa needs no
   condition text, so every record can be captioned from its image alone; the CLIPS captioner
   would condition on the alt-text, whose errors it could copy), seed 0, --captioner_steps
   steps, in WORKDIR/captioner. One captioner serves every CLIP seed.
4. recaption: every train record of the scarce world into field "gen" (greedy, KV-cached,
   `bigvl.inference.recaption`, `only_missing="short"`: records with a true caption keep it
   as "gen", the others get the captioner's), in WORKDIR/recaptioned.
5. CLIP (configs/recipe_demo.py model and budget, --clip_steps each) per seed: `alt` (alt-text
   only), `gen` (`mix` over "gen", p as the recipe's), `oracle` (`mix` over the full world's
   true `short`); evaluated like the ablation on the full world's held-out splits.
6. caption quality: CIDEr-D / BLEU-4 of "gen" on the uncaptioned records against the full
   world's `short`, beside the most-frequent-caption baseline (the most frequent caption of
   the captioned records).
Writes OUT.md (mean ± std table, the "gen beats alt on T→I R@1 by > 2 pooled std" test, the gap
to the oracle, caption quality, compute), OUT.csv (one row per CLIP run) and OUT.png.
`--set` applies config overrides to every trained config (e.g. a tiny model for a test).
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import time

from bigvl.config import apply_overrides, load_config, validate
from bigvl.data.caption_strategies import make_caption_strategy
from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records, write_records
from bigvl.data.world import ensure_config_world
from bigvl.evaluators import entries
from bigvl.evaluators.caption_metrics import caption_scores
from bigvl.evaluators.captioning import most_frequent_baseline
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.recaption import MANIFEST, recaption
from bigvl.inference.run import load_run
from bigvl.inference.run_config import decode_length
from bigvl.models.flops import model_flops_per_pair
from bigvl.parallel.process import setup_process
from bigvl.train.loop import train_and_evaluate
from experiments import recaption_report as report
from experiments.ablation import ROOT

ARMS = {"alt": ("alt", ""), "gen": ("mix", "gen"), "oracle": ("mix", "short")}  # arm → (recipe, caption field)
GEN, TRUE = "gen", "short"


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'a=1,b.c=x' → [("a", "1"), ("b.c", "x")]; ValueError naming a pair without '='."""
    pairs = []
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    return pairs


def world_settings(fraction: float, world_dir: str, world_overrides: str) -> tuple[dict, dict]:
    """(scarce, full) world config dicts (dir + WorldParams keys) from configs/demo.py's world."""
    full = load_config(os.path.join(ROOT, "configs", "demo.py")).world.to_dict()
    for key, value in parse_pairs(world_overrides):
        try:
            full[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            full[key] = value
    if world_dir:
        full["dir"] = world_dir
    full["dir"] = os.path.expanduser(full["dir"])
    full["caption_fraction"] = 1.0
    scarce = {**full, "caption_fraction": fraction, "dir": full["dir"].rstrip("/") + f"_captions{fraction:g}"}
    return scarce, full


def ensure_worlds(scarce: dict, full: dict) -> None:
    for world in (full, scarce):
        ensure_config_world(world)


def train_glob(world: dict) -> str:
    return os.path.join(world["dir"], "train-*.array_record")


def write_captioned_subset(scarce: dict, out_dir: str) -> int:
    """Writes the scarce world's records that carry a `short` caption into out_dir (once); returns their count."""
    done = os.path.join(out_dir, "subset.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)["records"]
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for path in resolve_paths([train_glob(scarce)]):
        kept = [d for d in read_records(path) if decode_example(d, where=path)["captions"].get(TRUE)]
        target = os.path.join(out_dir, os.path.basename(path))
        write_records(target + ".partial", kept)
        os.replace(target + ".partial", target)
        total += len(kept)
    if not total:
        raise ValueError(f"{scarce['dir']}: no train record carries a {TRUE!r} caption (caption_fraction too small)")
    with open(done, "w") as f:
        json.dump({"records": total, "world": scarce["dir"]}, f)
    return total


def point_at_world(config, world: dict) -> None:
    """Sets config.world, the tokenizer and every evaluation split to `world`'s files (in place)."""
    config.world.update({k: v for k, v in world.items() if k in config.world})
    d = world["dir"]
    config.data.tokenizer = os.path.join(d, "tokenizer.model")
    for name, kind, entry in entries(config.evals):  # each evaluator entry's files, by their name in the world
        for option in kind.files:
            if entry[option]:
                config.evals[name][option] = os.path.join(d, os.path.basename(entry[option]))


def train_run(config, workdir: str, overrides: str) -> dict:
    """Trains `config` in workdir (or reads its finished result); returns its final metrics with
    train_time_s and train_flops (model FLOPs of every step, bigvl.models.flops)."""
    done = os.path.join(workdir, "final_metrics.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    with config.unlocked():
        config.progress_bar = False
        config.report = False
    apply_overrides(config, [f"{k}={v}" for k, v in parse_pairs(overrides)])
    validate(config)
    num_texts = make_caption_strategy(config.data).num_texts
    flops = model_flops_per_pair(config.model, num_texts, caption_target=bool(config.data.target_field))
    t0 = time.perf_counter()
    train_and_evaluate(config, workdir)
    with open(done) as f:
        result = {**json.load(f), "train_time_s": time.perf_counter() - t0,
                  "train_flops": flops["train"] * config.batch_size * config.total_steps}
    with open(done, "w") as f:
        json.dump(result, f, indent=2)
    return result


def short_budget(config, steps: int) -> None:
    config.total_steps, config.eval_steps, config.ckpt_steps = steps, 0, steps
    config.optim.warmup_steps = min(config.optim.warmup_steps, max(steps // 5, 1))


def train_captioner(scarce: dict, subset_dir: str, steps: int, workdir: str, overrides: str) -> dict:
    config = load_config(os.path.join(ROOT, "configs", "coca_demo.py"))
    point_at_world(config, scarce)
    config.data.train_paths = [os.path.join(subset_dir, "train-*.array_record")]
    config.seed = 0
    short_budget(config, steps)
    return train_run(config, workdir, overrides)


def run_recaption(captioner_dir: str, world: dict, out_dir: str, guidance: float = 0.0, only_missing: str = TRUE) -> dict:
    """Recaptions `world`'s train shards into out_dir, field "gen", greedy (with classifier-free guidance w =
    `guidance`); records holding `only_missing` keep it ("" = caption every record). Reused when done."""
    path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    run = load_run(captioner_dir)
    cfg = DecodeConfig(method="greedy", max_length=decode_length(run.config), guidance=guidance)
    return recaption(run, resolve_paths([train_glob(world)]), out_dir, GEN, cfg, seed=0, batch_size=256,
                     only_missing=only_missing, progress=False, workdir=captioner_dir)


def train_clip(arm: str, seed: int, steps: int, paths: dict, full: dict, workdir: str, overrides: str) -> dict:
    recipe, field = ARMS[arm]
    config = load_config(f"recipe_demo:{recipe},steps={steps}")
    point_at_world(config, full)
    config.data.train_paths = [paths[arm]]
    if field:
        config.data.caption_field = field
    config.seed = seed
    return train_run(config, workdir, overrides)


def caption_quality(recaptioned_dir: str, scarce: dict, full: dict) -> dict:
    """CIDEr-D / BLEU-4 of "gen" against the full world's `short` on the scarce world's uncaptioned
    records, and of the most frequent captioned-record caption (the baseline)."""
    def records(pattern):
        for path in resolve_paths([pattern]):
            for d in read_records(path):
                yield decode_example(d, where=path)
    truth = {r["id"]: r["captions"][TRUE] for r in records(train_glob(full))}
    captioned = {r["id"]: r["captions"][TRUE] for r in records(train_glob(scarce)) if r["captions"].get(TRUE)}
    generated = {r["id"]: r["captions"][GEN] for r in records(os.path.join(recaptioned_dir, "train-*.array_record"))
                 if r["id"] not in captioned}
    if not generated:
        return {"uncaptioned": 0}
    refs = {k: [truth[k]] for k in generated}
    gen = caption_scores(generated, refs)
    base = most_frequent_baseline(list(captioned.values()), refs)
    exact = sum(generated[k] == truth[k] for k in generated) / len(generated)
    return {"uncaptioned": len(generated), "captioned": len(captioned), "gen_cider_d": gen["cider_d"],
            "gen_bleu4": gen["bleu4"], "gen_exact_match": exact, "baseline_cider_d": base["cider_d"],
            "baseline_bleu4": base["bleu4"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.recaption_experiment",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--clip_steps", type=int, default=250)
    parser.add_argument("--captioner_steps", type=int, default=1000)
    parser.add_argument("--caption_fraction", type=float, default=0.1)
    parser.add_argument("--workdir", default="workdirs/recaption_experiment")
    parser.add_argument("--out", default="docs/results/recaption_experiment_runs")
    parser.add_argument("--world_dir", default="", help="the full world's directory (default: configs/demo.py's)")
    parser.add_argument("--world", default="", help="world key overrides, e.g. num_train=256,num_retrieval=40")
    parser.add_argument("--set", dest="overrides", default="",
                        help="config overrides for every trained run, e.g. batch_size=16,model.image.depth=1")
    args = parser.parse_args(argv)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)  # before JAX starts, as bigvl.main runs
    if not 0.0 < args.caption_fraction < 1.0:
        parser.error(f"--caption_fraction {args.caption_fraction} must be in (0, 1)")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    t0 = time.perf_counter()
    scarce, full = world_settings(args.caption_fraction, args.world_dir, args.world)
    ensure_worlds(scarce, full)
    w = args.workdir
    subset = write_captioned_subset(scarce, os.path.join(w, "captioned_shards"))
    captioner = train_captioner(scarce, os.path.join(w, "captioned_shards"), args.captioner_steps,
                                os.path.join(w, "captioner"), args.overrides)
    manifest = run_recaption(os.path.join(w, "captioner"), scarce, os.path.join(w, "recaptioned"))
    quality = caption_quality(os.path.join(w, "recaptioned"), scarce, full)
    print(json.dumps({"stage": "captions", "subset": subset, **quality}), flush=True)
    paths = {"alt": train_glob(scarce), "gen": os.path.join(w, "recaptioned", "train-*.array_record"),
             "oracle": train_glob(full)}
    rows = []
    for seed in seeds:
        for arm in ARMS:
            result = train_clip(arm, seed, args.clip_steps, paths, full, os.path.join(w, f"{arm}_seed{seed}"),
                                args.overrides)
            row = {"arm": arm, "seed": seed, **{k: result[k] for k, _ in report.METRICS if k in result},
                   "train_time_s": result.get("train_time_s", float("nan")),
                   "train_flops": result.get("train_flops", float("nan"))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    compute = {"captioner_steps": args.captioner_steps, "captioner_train_s": captioner.get("train_time_s"),
               "captioner_train_flops": captioner.get("train_flops"),
               "captioner_cider_d_heldout": captioner.get("captioning/cider_d"),
               "recaption_s": manifest.get("decode_seconds"), "recaption_decoded": manifest.get("decoded"),
               "recaption_degenerate": manifest.get("degenerate"), "recaption_empty": manifest.get("empty")}
    text = report.write_outputs(rows, quality, compute, vars(args), args.out, time.perf_counter() - t0)
    print(text)
    print(f"wrote {args.out}.md, {args.out}.csv, {args.out}.png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
