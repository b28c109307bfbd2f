"""Standalone evaluation of a checkpoint: `python -m bigvl.evaluate --workdir DIR [--step N]` (= `bigvl evaluate`).

Reads the config the run saved (`DIR/config.json`), restores the params and runs every
evaluator entry the config names (`evals.NAME`); `--config.evals.NAME.split=...` overrides point one at
another split (a run saved before entries existed is converted on read).

`--suite NAME[,NAME...] --data_dir DIR` runs published benchmarks instead (CLIP_benchmark wds,
TFDS, ImageFolder, Karpathy COCO/Flickr30k, Urban1k, DOCCI, DCI, SugarCrepe, ARO; the list is
`bigvl.evaluators.suites.SUITES`): it prints a table and writes DIR/eval/<suite>.json in
CLIP_benchmark's result shape.
"""
from __future__ import annotations

import json
import sys

from bigvl.cli import command_parser
from bigvl.config import ConfigError, apply_overrides, load_config_json, split_overrides
from bigvl.evaluators import run_evals
from bigvl.evaluators.suites import parse_suites, run_suites, write_result
from bigvl.evaluators.suites.results import format_table
from bigvl.inference.run import load_run
from bigvl.parallel.process import setup_process


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("evaluate", __doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    parser.add_argument("--suite", default="", help="benchmark suites, comma-separated (e.g. wds/imagenet1k)")
    parser.add_argument("--data_dir", default=None, help="where the suites' files are (default: evals.data_dir)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    setup_process("%(message)s")  # before JAX starts its backend; the suites log their images/s

    try:
        suites = parse_suites(args.suite) if args.suite else []  # a typo fails before the checkpoint loads
        config = load_config_json(args.workdir)
        apply_overrides(config, split_overrides(rest))
        run = load_run(args.workdir, step=args.step, config=config)
        if suites:
            data_dir = args.data_dir or run.config.evals.get("data_dir", "") or "."
            results = run_suites(run.encoder, suites, data_dir)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if suites:
        print(format_table(results))
        for name, (task, metrics) in results.items():
            print(f"wrote {write_result(args.workdir, name, task, metrics, step=run.step)}")
        return 0
    metrics = run_evals(run.encoder, run.config.evals)
    print(json.dumps({"step": run.step, **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
