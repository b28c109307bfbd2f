"""DIR/manifest.json: the per-unit stats of a conversion merged into one summary.

    {"samples_read", "written", "failed_downloads": {count, by_reason},
     "bad": {count, by_kind, examples: [[where, reason], ...]},
     "duplicate_keys": {"dropped_within_unit", "across_units"},
     "alt_missing", "tables": [{path, join, rows, repeated_join_values, joined, not_joined,
     samples_without_join_field}], "coverage": {field: fraction of written records},
     "caption_lengths": {field: {"words": {p5, p50, p95, p99, max, mean}, "tokens": {...}}},
     "shards": [file names], "units", "resumed_units", "workers", "wall_s",
     "records_per_s" (records written by this run / its wall time)}

`samples_read` counts the samples found in the inputs (faulty ones included; failed downloads,
which have no sample, are counted apart). A key repeated within a unit is dropped; one repeated
across units is written and counted under `across_units`. Lengths are per field ("alt" is the
alt-text), from exact histograms; tokens only when a tokenizer was given.
"""
from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

PERCENTILES = (5, 50, 95, 99)


def percentiles(histogram: dict) -> dict[str, float]:
    """{p5, p50, p95, p99, max, mean} of the values of a {value: count} histogram (numpy's
    'lower' method: each percentile is a value that occurs)."""
    values = np.array(sorted(int(v) for v in histogram), dtype=np.int64)
    counts = np.array([histogram[k] for k in sorted(histogram, key=int)], dtype=np.int64)
    expanded = np.repeat(values, counts)
    out = {f"p{p}": float(np.percentile(expanded, p, method="lower")) for p in PERCENTILES}
    out.update(max=float(expanded.max()), mean=round(float(expanded.mean()), 3))
    return out


def _add_histograms(into: dict, histograms: dict) -> None:
    for field, histogram in histograms.items():
        target = into.setdefault(field, collections.Counter())
        for value, count in histogram.items():
            target[int(value)] += count


def merge_stats(stats: Sequence[dict[str, Any]], specs: Sequence, table_sizes: Sequence[tuple[int, int]],
                wall_s: float, workers: int, resumed_units: int, with_tokens: bool,
                written_now: int) -> dict[str, Any]:
    """The manifest (module docstring) of all units' stats, in unit order; `written_now`: the records
    written by this run (not by the run it resumed), for records_per_s."""
    total = collections.Counter()
    bad, failed_reasons, coverage = collections.Counter(), collections.Counter(), collections.Counter()
    words, tokens, examples, shards = {}, {}, [], []
    id_counts = collections.Counter()
    n_tables = len(specs)
    joined, not_joined, no_field = [0] * n_tables, [0] * n_tables, [0] * n_tables
    for s in stats:
        for key in ("read", "written", "failed_downloads", "duplicates", "alt_missing"):
            total[key] += s[key]
        bad.update(s["bad"])
        failed_reasons.update(s["failed_download_reasons"])
        coverage.update(s["coverage"])
        examples.extend(s["bad_examples"])
        shards.extend(s["shards"])
        id_counts.update(s["ids"])
        for t in range(n_tables):
            joined[t] += s["joined"][t]
            not_joined[t] += s["not_joined"][t]
            no_field[t] += s["without_join_field"][t]
        _add_histograms(words, s["words"])
        _add_histograms(tokens, s["tokens"])
    written = total["written"]
    lengths = {}
    for field in sorted(words):
        lengths[field] = {"words": percentiles(words[field])}
        if with_tokens and field in tokens:
            lengths[field]["tokens"] = percentiles(tokens[field])
    return {
        "samples_read": total["read"],
        "written": written,
        "failed_downloads": {"count": total["failed_downloads"], "by_reason": dict(failed_reasons)},
        "bad": {"count": sum(bad.values()), "by_kind": dict(bad), "examples": examples[:20]},
        "duplicate_keys": {"dropped_within_unit": total["duplicates"],
                           "across_units": sum(c - 1 for c in id_counts.values() if c > 1)},
        "alt_missing": total["alt_missing"],
        "tables": [{"path": spec.path, "join": f"{spec.column}={spec.field}", "rows": rows,
                    "repeated_join_values": repeated, "joined": joined[t], "not_joined": not_joined[t],
                    "samples_without_join_field": no_field[t],
                    "captions": {name: column for name, column in spec.captions}}
                   for t, (spec, (rows, repeated)) in enumerate(zip(specs, table_sizes))],
        "coverage": {field: round(count / written, 6) if written else 0.0 for field, count in sorted(coverage.items())},
        "caption_lengths": lengths,
        "shards": shards,
        "units": len(stats),
        "resumed_units": resumed_units,
        "workers": workers,
        "wall_s": round(wall_s, 3),
        "records_per_s": round(written_now / wall_s, 1) if wall_s > 0 else None,
    }
