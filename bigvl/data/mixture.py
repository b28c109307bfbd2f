"""Weighted mixtures of training sources: `data.sources = [{paths, weight, <caption strategy keys>}, ...]`.

    c.data.sources = [dict(name="web", paths=["web/*.array_record"], weight=0.7, caption_strategy="alt"),
                      dict(name="recap", paths=["recap/*.array_record"], weight=0.3, caption_strategy="recap")]

Each source is read, shuffled with a seed of its own and repeated on its own; grain's
`MapDataset.mix` interleaves them in proportion to the weights (deterministically: position p of
the mixed stream is a fixed position of one source, so the stream is still a function of (seed,
step) and a restored iterator resumes exactly). A source may override any caption strategy key
of `config.data` (`strategy_config_defaults`: caption_strategy, mix_p, caption_field,
min_caption_score, ...). Examples carry "source" (int32, the source's index) until the batch
leaves the pipeline, where `RealisedProportions` counts and logs them and takes the key out.
An empty `data.sources` (the default) reads `data.train_paths` as before.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import ml_collections
import numpy as np

from bigvl.data.caption_strategies import strategy_config_defaults

log = logging.getLogger(__name__)

SOURCE_KEYS = ("name", "paths", "weight")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One entry of data.sources: its name, files or globs, mixing weight and caption strategy overrides."""
    name: str
    paths: tuple[str, ...]
    weight: float
    overrides: dict[str, Any]


def source_specs(data_cfg) -> list[SourceSpec]:
    """data.sources as SourceSpecs ([] when unset); ValueError naming `data.sources[i].KEY` for a bad entry."""
    specs, allowed = [], set(SOURCE_KEYS) | set(strategy_config_defaults())
    for i, entry in enumerate(data_cfg.get("sources", None) or []):
        entry = dict(entry.to_dict() if hasattr(entry, "to_dict") else entry)
        where = f"data.sources[{i}]"
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: not a source key (name, paths, weight, or a caption strategy "
                             f"key of config.data such as caption_strategy, mix_p, caption_field)")
        paths = entry.get("paths")
        if isinstance(paths, str) or not paths:
            raise ValueError(f"{where}.paths: a non-empty list of files or globs, got {paths!r}")
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"{where}.weight: must be a positive number, got {weight!r}")
        overrides = {k: v for k, v in entry.items() if k not in SOURCE_KEYS}
        specs.append(SourceSpec(str(entry.get("name", f"source{i}")), tuple(paths), float(weight), overrides))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"data.sources: two sources share a name ({[s.name for s in specs]})")
    return specs


def source_data_config(data_cfg, spec: SourceSpec) -> ml_collections.ConfigDict:
    """config.data with the source's caption strategy overrides applied (a copy)."""
    cfg = ml_collections.ConfigDict(data_cfg.to_dict())
    cfg.update(spec.overrides)
    return cfg


def source_seed(seed: int, index: int) -> int:
    """The shuffle seed of source `index`: independent streams for the sources of one run."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class Tag:
    """example → example with "source": int32 `index` (None, a faulty record, stays None). Picklable."""

    def __init__(self, index: int, offset: int):
        self.index, self.offset = index, offset

    def __call__(self, example):
        if example is None:
            return None
        return {**example, "index": np.int64(example["index"] + self.offset), "source": np.int32(self.index)}


class RealisedProportions:
    """batch → batch without "source"; counts the examples of each source and logs the realised
    proportions beside the weights' (every `every` batches, and when a power-of-two count is passed)."""

    def __init__(self, specs: Sequence[SourceSpec], every: int = 100):
        self.names = [s.name for s in specs]
        total = sum(s.weight for s in specs)
        self.expected = [s.weight / total for s in specs]
        self.counts = np.zeros(len(specs), np.int64)
        self.batches, self.every = 0, every

    def __call__(self, batch: dict) -> dict:
        batch = dict(batch)
        self.counts += np.bincount(np.asarray(batch.pop("source")).ravel(), minlength=len(self.names))
        self.batches += 1
        if self.batches % self.every == 0 or self.batches & (self.batches - 1) == 0:
            log.info("data.sources realised proportions after %d examples: %s", self.counts.sum(), self.summary())
        return batch

    def proportions(self) -> dict[str, float]:
        """{source name: fraction of the examples counted so far}."""
        return {n: float(c) / max(int(self.counts.sum()), 1) for n, c in zip(self.names, self.counts)}

    def summary(self) -> str:
        return ", ".join(f"{n} {p:.3f} (weight {e:.3f})" for (n, p), e in zip(self.proportions().items(), self.expected))
