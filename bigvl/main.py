"""Command line: `python -m bigvl.main --config NAME[:ARGS] --workdir DIR [--config.k=v ...]` (= `bigvl train`).

--config is a shipped config's name (`demo`, `clip_b16`, ...: `bigvl` lists them) or a path to a
config file (`configs/demo.py`, your own); ARGS after the colon are comma-separated flags and
key=value pairs (`demo:alt,sigmoid`). Trains (resuming from DIR) and evaluates. Everything that can be checked without
compiling is checked first (config keys and values, mesh shape, batch divisibility,
files); a problem there is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

import jax

from bigvl.cli import command_parser
from bigvl.config import ConfigError, apply_overrides, load_config, split_overrides, validate
from bigvl.data.pipeline import NoReadableShardError, resolve_paths
from bigvl.data.tokenizer import Tokenizer
from bigvl.evaluators import entries
from bigvl.inference.checkpoint_format import CheckpointVersionError
from bigvl.parallel import distributed
from bigvl.parallel.mesh import check_batch_divisible, make_mesh
from bigvl.parallel.process import setup_process
from bigvl.train.checkpoints import CheckpointLayoutError
from bigvl.train.loop import train_and_evaluate
from bigvl.train.workdir_checks import check_workdir


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Splits argv into --config/--workdir and the list of 'key=value' config overrides."""
    parser = command_parser("train", __doc__)
    parser.add_argument("--config", required=True, help="NAME[:ARGS] of a shipped config, or PATH.py[:ARGS]")
    parser.add_argument("--workdir", required=True, help="checkpoints, logs and metrics go here")
    args, rest = parser.parse_known_args(argv)
    try:
        return args, split_overrides(rest)
    except ConfigError as e:
        parser.error(str(e))


def preflight(config) -> None:
    """Checks that need devices or files but no compilation; raises with a one-line message."""
    mesh = make_mesh(config.mesh)
    check_batch_divisible(config.batch_size, mesh)
    if config.batch_size % jax.process_count():
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{jax.process_count()} hosts")
    if config.data.source == "array_record":
        for i, source in enumerate(config.data.sources):  # a weighted mixture (bigvl/data/mixture.py)
            resolve_paths(source["paths"], f"data.sources[{i}].paths")
        if not config.data.sources:
            resolve_paths(config.data.train_paths, "data.train_paths")
    else:  # a TFDS dataset that is not prepared is one line here (tensorflow-datasets: only TFDS runs need it)
        from bigvl.data.tfds_source import TfdsSource
        TfdsSource(config.data)
    resolve_paths([config.data.tokenizer], "data.tokenizer")
    Tokenizer.for_model(config.data.tokenizer, config.model.text)  # checks vocab / BOS / EOS
    for name, kind, entry in entries(config.evals):  # the file options each evaluator type declares
        for option in kind.files:
            if entry[option]:
                resolve_paths([entry[option]], f"evals.{name}.{option}")


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    setup_process()  # before JAX starts its backend
    distributed.maybe_initialize()

    try:
        config = load_config(args.config)
        apply_overrides(config, overrides)
        validate(config)  # before building the world: a config error costs nothing
        if config.world.build:
            from bigvl.data.world import ensure_config_world  # the built-in world: only when a config asks for it
            ensure_config_world(config.world)
        preflight(config)
        check_workdir(args.workdir, int(config.min_free_disk_gb * 2**30))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    logging.getLogger(__name__).info("%s", distributed.describe())
    try:
        metrics = train_and_evaluate(config, args.workdir)
    except FloatingPointError as e:  # nonfinite='stop': one line naming the step and the newest checkpoint
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (NoReadableShardError, CheckpointVersionError, CheckpointLayoutError) as e:  # found before training
        print(f"error: {e}", file=sys.stderr)
        return 2
    if config.report:
        from bigvl.report import write_report  # matplotlib: only when a report is asked for
        if jax.process_index() == 0:
            write_report(config, args.workdir, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
