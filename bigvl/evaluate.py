"""Standalone evaluation of a checkpoint: `python -m bigvl.evaluate --workdir DIR [--step N]`.

Reads the config the run saved (`DIR/config.json`), restores the params and runs every
evaluator the config names; `--config.evals.X=...` overrides point it at other splits.
"""
from __future__ import annotations

import argparse
import json
import sys

from bigvl.config import ConfigError, apply_overrides, load_config_json, split_overrides
from bigvl.evaluators import run_evals
from bigvl.inference.run import load_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigvl.evaluate", description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    try:
        config = load_config_json(args.workdir)
        apply_overrides(config, split_overrides(rest))
        run = load_run(args.workdir, step=args.step, config=config)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = run_evals(run.encoder, run.config.evals)
    print(json.dumps({"step": run.step, **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
