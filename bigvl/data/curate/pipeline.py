"""The curation pipeline on Apache Beam: shards in → balanced, filtered, de-duplicated shards out.

    manifest = curate(train_paths, "/data/curated", CurateOptions(entries=..., balance_t=20_000,
                      keep_fraction=0.7, dedup="near"), against=eval_paths)

One pass reads every record once and computes, as Beam combiners over the whole input:
the MetaCLIP entry counts (`Count.PerElement`), the score threshold (the (1 − q)-quantile from
Beam's `ApproximateQuantiles` sketch: rank error below N / 1000, no sort in memory) and the
duplicate clusters (exact-hash groups + perceptual-hash bands, joined with `GroupByKey`, then
one union–find over the pairs). Each record's decision reads them as side inputs; the kept
positions are grouped per shard and each output shard is written once, atomically
(`shards_io.write_kept`). A record is dropped, with the first reason that applies: "fault" (it
does not decode: skipped and counted), "duplicate", "no_entry" / "balance_draw" (MetaCLIP),
"no_score" / "low_score" (filter). Everything is a function of the input and the options (the
draws are hashes of seed, record id and entry), so a killed run started again writes the
missing shards only, and they equal an uninterrupted run's byte for byte.

Runs on Beam's in-process Python runner (`beam_io.pipeline_options` / `beam_io.beam_runner`: the
FnApiRunner the DirectRunner uses; `workers` > 1: its multi-processing mode), so Prism is never tried.
OUT/manifest.json: records in/kept/dropped by reason, per shard, the entry counts and kept counts
(the kept distribution), the threshold; OUT/.curate/ holds the pipeline's intermediate results.
OUT may be a gs:// prefix: the state, the manifest and the shards go through Beam's filesystems
(`beam_io`), as the shard builder's do.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from bigvl.data.curate.dedup import band_keys, close_pairs, duplicates_to_drop
from bigvl.data.curate.metaclip import EntryMatcher, balanced_keep, keep_probabilities
from bigvl.data.curate.options import CurateOptions, record_features
from bigvl.data.curate.shards_io import shard_records, write_kept
from bigvl.data.ingest.beam_io import beam_runner, exists, join, makedirs, pipeline_options, read_json, write_json

log = logging.getLogger(__name__)

STATE = ".curate"  # OUT/.curate/: the pipeline's results (counts, threshold, duplicates, shard stats)
MANIFEST = "manifest.json"
QUANTILES = 1001  # the sketch's quantiles: rank error < N / 1000
TRAIN, EVAL = 1, 0  # first element of a record key (group, shard, position): evaluation keys sort first


def score_threshold(quantiles: Sequence[float], keep_fraction: float) -> float:
    """The smallest score kept when keeping the top `keep_fraction`: the (1 − q)-quantile of the
    sketch's QUANTILES evenly spaced quantiles (min … max); -inf without scores."""
    if not quantiles:
        return float("-inf")
    return float(quantiles[int(round((1.0 - keep_fraction) * (len(quantiles) - 1)))])


def decide(f: dict, options: CurateOptions, counts: dict, threshold: float, drop: set) -> str:
    """'kept' or the first reason the record is dropped (module docstring)."""
    if "fault" in f:
        return "fault"
    if f["key"] in drop:
        return "duplicate"
    if options.balancing:
        if not f["entries"]:
            return "no_entry"
        probs = dict(zip(f["entries"], keep_probabilities([counts.get(e, 0) for e in f["entries"]], options.balance_t)))
        if not balanced_keep(f["entries"], probs, options.seed, f["id"]):
            return "balance_draw"
    if options.filtering:
        if f["score"] is None:
            return "no_score"
        if f["score"] < threshold:
            return "low_score"
    return "kept"


def _features(item, options: CurateOptions, matcher, group: int):
    (shard, position), data = item
    return record_features((group, shard, position), data, options, matcher, where=f"shard {shard} record {position}")


def _exact_pairs(item):
    _, keys = item
    keys = sorted(keys)
    return [(keys[0], k) for k in keys[1:]]


def _save_json(value, path: str):
    """`beam_io.write_json` (a temporary name, then renamed) returning `value`, for the stages below."""
    write_json(path, value)
    return value


def _write_shard(item, paths: Sequence[str], out_dir: str):
    shard, decisions = item
    decisions = sorted(decisions)
    kept = [position for position, reason, _ in decisions if reason == "kept"]
    written = write_kept(paths[shard], out_dir, kept)
    reasons: dict[str, int] = {}
    entries: dict[int, int] = {}
    for _, reason, matched in decisions:
        reasons[reason] = reasons.get(reason, 0) + 1
        for e in (matched if reason == "kept" else ()):
            entries[e] = entries.get(e, 0) + 1
    return {"shard": os.path.basename(paths[shard]), "records": len(decisions), "kept": len(kept),
            "reasons": reasons, "kept_entries": entries, "written": written}


def build_pipeline(p, paths: Sequence[str], out_dir: str, options: CurateOptions, against: Sequence[str] = ()):
    """Adds the curation of `paths` (and the de-duplication against `against`) to Beam pipeline `p`;
    its results land in OUT/.curate/{counts,threshold,duplicates,shards}.json and the output shards."""
    state = join(out_dir, STATE)
    matcher = EntryMatcher(options.entries, options.case_sensitive) if options.balancing else None
    feats = (p | "train shards" >> beam.Create(list(enumerate(paths))) | "read" >> beam.FlatMap(shard_records)
             | "features" >> beam.Map(_features, options, matcher, TRAIN))
    counts = (feats | "matched" >> beam.FlatMap(lambda f: f.get("entries", ()))
              | "count entries" >> beam.combiners.Count.PerElement() | "as dict" >> beam.combiners.ToDict())
    counts | "save counts" >> beam.Map(lambda c: _save_json({str(k): v for k, v in c.items()},
                                                           join(state, "counts.json")))
    quantiles = (feats | "scores" >> beam.FlatMap(lambda f: [f["score"]] if f.get("score") is not None else [])
                 | "sketch" >> beam.CombineGlobally(ApproximateQuantilesCombineFn.create(num_quantiles=QUANTILES)))
    threshold = quantiles | "threshold" >> beam.Map(
        lambda q: _save_json({"threshold": score_threshold(q, options.keep_fraction), "quantiles": len(q)},
                             join(state, "threshold.json"))["threshold"])
    if options.dedup != "none":
        hashed = feats
        if against:
            hashed = (hashed, p | "eval shards" >> beam.Create(list(enumerate(against)))
                      | "read eval" >> beam.FlatMap(shard_records)
                      | "eval features" >> beam.Map(_features, CurateOptions(dedup=options.dedup), None, EVAL)
                      ) | "train and eval" >> beam.Flatten()
        hashed = hashed | "decodable" >> beam.Filter(lambda f: "fault" not in f)
        pairs = [hashed | "by bytes" >> beam.Map(lambda f: (f["exact"], f["key"])) | "group bytes" >> beam.GroupByKey()
                 | "exact pairs" >> beam.FlatMap(_exact_pairs)]
        if options.dedup == "near":
            d = options.max_distance
            pairs.append(hashed | "bands" >> beam.FlatMap(lambda f: [(b, (f["key"], f["near"]))
                                                                   for b in band_keys(f["near"], d)])
                         | "group bands" >> beam.GroupByKey()
                         | "near pairs" >> beam.FlatMap(lambda kv: close_pairs(list(kv[1]), d)))
        drop = (tuple(pairs) | "all pairs" >> beam.Flatten() | "pairs" >> beam.combiners.ToList()
                | "clusters" >> beam.Map(lambda edges: duplicates_to_drop(
                    [(tuple(a), tuple(b)) for a, b in edges], is_eval=lambda key: key[0] == EVAL)))
        drop | "save duplicates" >> beam.Map(lambda d: _save_json(sorted(d), join(state, "duplicates.json")))
    else:
        drop = p | "no duplicates" >> beam.Create([set()])
    decisions = feats | "decide" >> beam.Map(
        lambda f, c, t, d: (f["key"][1], (f["key"][2], decide(f, options, c, t, d), f.get("entries", []))),
        beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(threshold), beam.pvalue.AsSingleton(drop))
    return (decisions | "per shard" >> beam.GroupByKey() | "write" >> beam.Map(_write_shard, list(paths), out_dir)
            | "stats" >> beam.combiners.ToList()
            | "save stats" >> beam.Map(lambda s: _save_json(sorted(s, key=lambda x: x["shard"]),
                                                            join(state, "shards.json"))))


def curate(paths: Sequence[str], out_dir: str, options: CurateOptions, against: Sequence[str] = (),
           workers: int = 1) -> dict:
    """Curates `paths` into OUT (one output shard per input shard, same names); returns the manifest
    (also written to OUT/manifest.json). Raises ValueError when two inputs share a file name."""
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"input shards share file names ({sorted({n for n in names if names.count(n) > 1})[:3]}): "
                         "outputs are written under the input's name")
    makedirs(join(out_dir, STATE))
    start = time.time()
    beam_options = pipeline_options([], workers)  # in_memory for one worker, else `workers` processes
    with beam.Pipeline(runner=beam_runner(beam_options), options=beam_options) as p:  # never Prism (a download)
        build_pipeline(p, paths, out_dir, options, against)
    manifest = summarise(out_dir, options)
    manifest["wall_seconds"] = round(time.time() - start, 2)
    _save_json(manifest, join(out_dir, MANIFEST))
    return manifest


def summarise(out_dir: str, options: CurateOptions) -> dict:
    """The manifest from OUT/.curate/: totals, drops by reason, entry counts and kept counts by entry name."""
    def load(name, default):
        path = join(out_dir, STATE, name)
        return read_json(path) if exists(path) else default
    shards = load("shards.json", [])
    reasons: dict[str, int] = {}
    kept_entries: dict[str, int] = {}
    for s in shards:
        for k, v in s["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
        for e, v in s["kept_entries"].items():
            kept_entries[str(e)] = kept_entries.get(str(e), 0) + v
    name = dict(enumerate(options.entries))
    counts = load("counts.json", {})
    return {
        "records": sum(s["records"] for s in shards), "kept": sum(s["kept"] for s in shards),
        "dropped": {k: v for k, v in sorted(reasons.items()) if k != "kept"},
        "faulty": reasons.get("fault", 0),
        "options": options.to_json() | {"entries": len(options.entries)},
        "entry_counts": {name[int(e)]: counts[e] for e in sorted(counts, key=int)},
        "kept_entry_counts": {name[int(e)]: kept_entries[e] for e in sorted(kept_entries, key=int)},
        "score_threshold": load("threshold.json", {}).get("threshold") if options.filtering else None,
        "duplicates_dropped": len(load("duplicates.json", [])),
        "shards": shards,
    }
