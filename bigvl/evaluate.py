"""Standalone evaluation of a checkpoint: `python -m bigvl.evaluate --workdir DIR [--step N]` (= `bigvl evaluate`).

Reads the config the run saved (`DIR/config.json`), restores the params and runs every
evaluator entry the config names (`evals.NAME`); `--config.evals.NAME.split=...` overrides point one at
another split (a run saved before entries existed is converted on read).

`--suite NAME[,NAME...] --data_dir DIR` runs published benchmarks instead (CLIP_benchmark wds,
TFDS, ImageFolder, Karpathy COCO/Flickr30k, Urban1k, DOCCI, DCI, SugarCrepe, ARO; the list is
`bigvl.evaluators.suites.SUITES`): it prints a table and writes DIR/eval/<suite>.json in
CLIP_benchmark's result shape. `--predictions` also writes, for each zero-shot suite,
DIR/eval/<suite>_predictions.csv: per image its path, label, predicted class and one probability
column per class, scored as the run was trained (`bigvl.api.class_probabilities`: softmax over the
classes, or per-class sigmoids for SigLIP runs). `--suite folder --data_dir ROOT` is any ImageFolder.
"""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

from bigvl.cli import command_parser
from bigvl.config import ConfigError, apply_overrides, load_config_json, split_overrides
from bigvl.evaluators import run_evals
from bigvl.evaluators.suites import parse_suites, write_result
from bigvl.evaluators.suites.protocols import run_task
from bigvl.evaluators.suites.results import format_table, result_path
from bigvl.evaluators.suites.table import load_suite
from bigvl.evaluators.suites.tasks import Classification
from bigvl.inference.run import load_run
from bigvl.parallel.process import setup_process


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("evaluate", __doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    parser.add_argument("--suite", default="", help="benchmark suites, comma-separated (e.g. wds/imagenet1k)")
    parser.add_argument("--data_dir", default=None, help="where the suites' files are (default: evals.data_dir)")
    parser.add_argument("--predictions", action="store_true",
                        help="zero-shot suites: also write per-image class probabilities to eval/<suite>_predictions.csv")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    setup_process("%(message)s")  # before JAX starts its backend; the suites log their images/s

    try:
        suites = parse_suites(args.suite) if args.suite else []  # a typo fails before the checkpoint loads
        config = load_config_json(args.workdir)
        apply_overrides(config, split_overrides(rest))
        run = load_run(args.workdir, step=args.step, config=config)
        if suites:
            data_dir = args.data_dir or run.config.evals.get("data_dir", "") or "."
            results, written = {}, []
            for name in suites:
                task = load_suite(name, data_dir)
                options = {"scores_out": []} if args.predictions and isinstance(task, Classification) else {}
                results[name] = run_task(run.encoder, task, name, **options)
                if options:  # the cosines of the same pass, not a second one
                    written.append(write_predictions(run, args.workdir, name, task, np.concatenate(options["scores_out"])))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if suites:
        print(format_table(results))
        # NaFlex: the sequence length every suite ran at (--config.model.image.max_patches=L), in each result
        length = {"max_patches": run.encoder.max_patches} if run.encoder.max_patches else {}
        if length:
            print(f"NaFlex: images at their aspect ratio, max_patches={run.encoder.max_patches}")
        for name, (task, metrics) in results.items():
            print(f"wrote {write_result(args.workdir, name, task, metrics, step=run.step, extra=length)}")
        for path in written:
            print(f"wrote {path}")
        return 0
    metrics = run_evals(run.encoder, run.config.evals)
    if run.encoder.max_patches:  # NaFlex: the sequence length (--config.model.image.max_patches=L) it ran at
        metrics["max_patches"] = run.encoder.max_patches
    print(json.dumps({"step": run.step, **metrics}, indent=2))
    return 0


def write_predictions(run, workdir: str, suite: str, task: Classification, cosines: np.ndarray) -> str:
    """DIR/eval/<suite>_predictions.csv of a zero-shot task from its image-class cosines [N, C]: columns
    image, label, predicted, then one probability per class (`class_probabilities`); returns its path."""
    from bigvl.api import class_probabilities  # the user API sits above the evaluators
    probs = class_probabilities(run, cosines)
    names = getattr(task.images, "paths", None) or [str(i) for i in range(len(probs))]
    path = result_path(workdir, suite)[:-len(".json")] + "_predictions.csv"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["image", "label", "predicted", *task.classnames])
        for name, label, row in zip(names, task.labels, probs):
            out.writerow([name, int(label), int(row.argmax()), *(repr(float(p)) for p in row)])
    os.replace(path + ".tmp", path)
    return path


if __name__ == "__main__":
    sys.exit(main())
