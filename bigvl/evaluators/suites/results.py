"""Running suites and writing their results in CLIP_benchmark's JSON shape.

    {"dataset": "wds/imagenet1k", "model": "bigvl", "pretrained": "<workdir>", "task": "zeroshot_classification",
     "metrics": {"acc1": ..., "acc5": ..., "mean_per_class_recall": ...}, "language": "en", "step": 1000}

to RUN/eval/<suite, "/" → "_">.json (e.g. RUN/eval/wds_imagenet1k.json). A metric that is NaN (acc5 with
fewer than 5 classes) is written as a bare NaN token, as CLIP_benchmark's cli.py writes it with json.dump
(Python's json reads it back; strict JSON parsers do not), and printed as nan in the table.
"""
from __future__ import annotations

import json
import time

from bigvl.evaluators.suites.protocols import run_task
from bigvl.evaluators.suites.table import load_suite, parse_suites
from bigvl.parallel.storage import run_path, run_str, write_text


def run_suites(encoder, names: str | list[str], data_dir: str) -> dict[str, tuple[str, dict[str, float]]]:
    """{suite: (CLIP_benchmark task, metrics)} for each named suite (a comma-separated string or a list).

    Every name is checked before anything is read; a suite whose files are missing raises
    SuiteFilesMissing naming the file and the expected layout.
    """
    names = parse_suites(names) if isinstance(names, str) else parse_suites(",".join(names))
    return {name: run_task(encoder, load_suite(name, data_dir), desc=name) for name in names}


def result_path(workdir: str, suite: str) -> str:
    """`workdir/eval/<suite, "/" → "_">.json` (workdir local or a bucket, gs://...)."""
    return str(run_path(workdir) / "eval" / (suite.replace("/", "_") + ".json"))


def write_result(workdir: str, suite: str, task: str, metrics: dict[str, float], step: int | None = None,
                 model: str = "bigvl", extra: dict | None = None) -> str:
    """Writes RUN/eval/<suite>.json in CLIP_benchmark's shape (plus the fields of `extra`, e.g. a NaFlex
    run's max_patches); returns its path."""
    path = result_path(workdir, suite)
    result = {"dataset": suite, "model": model, "pretrained": run_str(workdir), "task": task,
              "metrics": metrics, "language": "en", "step": step,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})}
    write_text(path, json.dumps(result, indent=2))  # whole: a reader sees the old or the new result
    return path


def format_table(results: dict[str, tuple[str, dict[str, float]]]) -> str:
    """One line per suite: name, task, then metric=value (percent, 2 decimals)."""
    width = max((len(n) for n in results), default=5)
    lines = []
    for name, (task, metrics) in results.items():
        values = "  ".join(f"{k}={100 * v:.2f}" for k, v in metrics.items())
        lines.append(f"{name:<{width}}  {task:<24}  {values}")
    return "\n".join(lines)
