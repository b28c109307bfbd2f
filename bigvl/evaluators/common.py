"""Runs the evaluators a config names; chance levels for the results table.

One evaluation reads each split once and encodes its images once (`SplitCache`), however
many evaluators share it (the world's retrieval split serves retrieval, pointing and
captioning).
"""
from __future__ import annotations

import json

from bigvl.evaluators import captioning, hard_negatives, pointing, retrieval, zero_shot
from bigvl.evaluators.splits import SplitCache
from bigvl.evaluators.suites import run_suites


def run_evals(encoder, evals_cfg) -> dict[str, float]:
    """Every evaluator whose path is set in `config.evals`; keys like 'zeroshot/top1'."""
    splits = SplitCache(encoder, with_patches=[evals_cfg.pointing] if evals_cfg.pointing else [])
    metrics = {}
    if evals_cfg.zeroshot:
        for k, v in zero_shot.evaluate(encoder, evals_cfg.zeroshot, evals_cfg.zeroshot_classes, splits).items():
            metrics[f"zeroshot/{k}"] = v
    if evals_cfg.retrieval:
        fields = {"retrieval": evals_cfg.retrieval_field}
        if evals_cfg.long_retrieval_field:
            fields["long_retrieval"] = evals_cfg.long_retrieval_field
        for name, values in retrieval.evaluate(encoder, evals_cfg.retrieval, fields, splits).items():
            metrics.update({f"{name}/{k}": v for k, v in values.items()})
    if evals_cfg.hard_negatives:
        for k, v in hard_negatives.evaluate(encoder, evals_cfg.hard_negatives, splits).items():
            metrics[f"hard_negatives/{k}"] = v
    if evals_cfg.pointing:  # dense text-patch alignment (splits whose records carry extras.regions)
        metrics.update({f"pointing/{k}": v for k, v in pointing.evaluate(encoder, evals_cfg.pointing, splits).items()})
    if evals_cfg.captioning:  # CoCa / CLIPS
        metrics.update({f"captioning/{k}": v for k, v in captioning.evaluate(
            encoder, evals_cfg.captioning, evals_cfg.captioning_field, evals_cfg.captioning_max_length,
            evals_cfg.captioning_method, evals_cfg.captioning_beam_size, splits).items()})
    if evals_cfg.get("suites"):  # published benchmarks (evaluators/suites): keys like 'wds/imagenet1k/acc1'
        for name, (_, values) in run_suites(encoder, evals_cfg.suites, evals_cfg.data_dir).items():
            metrics.update({f"{name}/{k}": v for k, v in values.items()})
    return metrics


def chance_levels(evals_cfg, num_retrieval: int | None = None) -> dict[str, float]:
    """Expected value of each metric for a random model (for the results table)."""
    chance = {}
    if evals_cfg.zeroshot:
        with open(evals_cfg.zeroshot_classes) as f:
            num_classes = len(json.load(f)["classnames"])
        chance["zeroshot/top1"] = 1 / num_classes
        chance["zeroshot/top5"] = min(1.0, 5 / num_classes)
    if evals_cfg.retrieval and num_retrieval:
        for k in (1, 5, 10):
            for name in ("retrieval", "long_retrieval") if evals_cfg.long_retrieval_field else ("retrieval",):
                chance[f"{name}/i2t_r{k}"] = chance[f"{name}/t2i_r{k}"] = min(1.0, k / num_retrieval)
    if evals_cfg.hard_negatives:
        chance["hard_negatives/accuracy"] = 0.5
    return chance
