"""The evaluator types, and running the entries a config names; chance levels for the results table.

A config's `evals` section holds global keys (`batch_size`, `suites`, `data_dir`) and entries,
each `evals.NAME = dict(type=TYPE, **options)`, as big_vision's evaluators are configured.
`EVALUATORS` is the explicit table of types: what options each takes (with defaults), which
of them are files to check at start-up, which model kinds it runs on, its cross-checks and
how it runs. An entry whose `split` is "" is off. Metrics are named `NAME/metric`.

One evaluation reads each split once and encodes its images once (`SplitCache`), however
many entries share it (the world's retrieval split serves retrieval, pointing and captioning).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from bigvl.evaluators import captioning, dense, hard_negatives, pointing, refexp, retrieval, zero_shot
from bigvl.evaluators.splits import SplitCache
from bigvl.evaluators.suites import run_suites

GLOBAL_KEYS = ("batch_size", "suites", "data_dir")  # keys of config.evals that are not entries
MODEL_KINDS = ("two_tower", "coca", "clips")


@dataclasses.dataclass(frozen=True)
class EvaluatorType:
    """One kind of evaluator an `evals.NAME` entry can name by `type`.

    options: the entry's keys besides `type`, with defaults (`split`: the held-out file; "" = off).
    run(encoder, entry, splits, batch_size) -> {metric: value}, named as NAME/metric by the runner.
    files: options that name files, checked at start-up when set.
    model_kinds: the `model.kind`s it runs on. check(entry, config): raises ValueError for an
    entry that cannot run with this config. chance(entry) -> {metric: chance} for the results table.
    patches: it reads the split's patch embeddings (the image tower then runs once for both).
    """
    options: dict
    run: Callable
    files: tuple[str, ...] = ("split",)
    model_kinds: tuple[str, ...] = MODEL_KINDS
    check: Callable | None = None
    chance: Callable | None = None
    patches: bool = False


EVALUATORS = {
    "zeroshot": EvaluatorType(zero_shot.OPTIONS, zero_shot.run, files=("split", "classes"),
                              chance=zero_shot.chance),
    "retrieval": EvaluatorType(retrieval.OPTIONS, retrieval.run, chance=retrieval.chance),
    "hard_negatives": EvaluatorType(hard_negatives.OPTIONS, hard_negatives.run, chance=hard_negatives.chance),
    "pointing": EvaluatorType(pointing.OPTIONS, pointing.run, model_kinds=("two_tower",), patches=True),
    # SigLIP 2's localisation and dense-feature evaluators (docs/guides/siglip2.md)
    "refexp": EvaluatorType(refexp.OPTIONS, refexp.run, model_kinds=("two_tower",), check=refexp.check),
    "dense": EvaluatorType(dense.OPTIONS, dense.run, model_kinds=("two_tower",), patches=True),
    "captioning": EvaluatorType(captioning.OPTIONS, captioning.run, model_kinds=("coca", "clips"),
                                check=captioning.check),
}


def entry_schema(type_name: str) -> ml_collections.ConfigDict:
    """An entry of `type_name` with every option at its default: the schema of such entries."""
    return ml_collections.ConfigDict({"type": type_name, **EVALUATORS[type_name].options})


def default_entries() -> dict[str, ml_collections.ConfigDict]:
    """One entry per type, named as the type and off (split ""): the schema's `evals` entries."""
    return {name: entry_schema(name) for name in EVALUATORS}


def entry_options(entry) -> ml_collections.ConfigDict:
    """`entry` over its type's defaults (a config may leave options out)."""
    return ml_collections.ConfigDict({**entry_schema(entry["type"]).to_dict(), **dict(entry)})


def entries(evals_cfg, active_only: bool = True) -> list[tuple[str, EvaluatorType, ml_collections.ConfigDict]]:
    """[(NAME, type, options)] of the config's entries (those with a split, unless `active_only` is False).

    In the table's type order; within a type the entry named as the type first, then by name.
    """
    found = []
    for name in evals_cfg.keys():
        if name in GLOBAL_KEYS:
            continue
        options = entry_options(evals_cfg[name])
        if options.split or not active_only:
            found.append((name, EVALUATORS[options.type], options))
    order = list(EVALUATORS)
    return sorted(found, key=lambda e: (order.index(e[2].type), e[0] != e[2].type, e[0]))


def run_evals(encoder, evals_cfg) -> dict[str, float]:
    """Every entry of `config.evals` whose split is set, then the suites; keys like 'zeroshot/top1'."""
    active = entries(evals_cfg)
    splits = SplitCache(encoder, with_patches=[options.split for _, kind, options in active if kind.patches])
    metrics = {}
    for name, kind, options in active:
        values = kind.run(encoder, options, splits, evals_cfg.batch_size)
        metrics.update({f"{name}/{k}": v for k, v in values.items()})
    if evals_cfg.get("suites"):  # published benchmarks (evaluators/suites): keys like 'wds/imagenet1k/acc1'
        for name, (_, values) in run_suites(encoder, evals_cfg.suites, evals_cfg.data_dir).items():
            metrics.update({f"{name}/{k}": v for k, v in values.items()})
    return metrics


def chance_levels(evals_cfg) -> dict[str, float]:
    """Expected value of each metric for a random model (for the results table)."""
    chance = {}
    for name, kind, options in entries(evals_cfg):
        if kind.chance is not None:
            chance.update({f"{name}/{k}": v for k, v in kind.chance(options).items()})
    return chance
