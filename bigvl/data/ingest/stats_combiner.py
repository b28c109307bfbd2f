"""The Beam combiner that merges the per-unit stats of the shard builder's pipeline
(bigvl/data/ingest/pipeline.py) into one stats dict of the same shape, `manifest.merge_stats`' input.
"""
from __future__ import annotations

MAX_EXAMPLES = 20  # fault examples kept in the manifest


class MergeStats:
    """CombineFn: per-unit stats → one stats dict of the same shape (manifest.merge_stats' input), bounded
    by the number of fields and units (shard names), never by records: `ids` are counted apart."""

    COUNTS = ("read", "written", "failed_downloads", "duplicates", "alt_missing")

    def __init__(self, tables: int):
        self.tables = tables

    def create_accumulator(self):
        n = self.tables
        return {**{k: 0 for k in self.COUNTS}, "failed_download_reasons": {}, "bad": {}, "examples": [],
                "joined": [0] * n, "not_joined": [0] * n, "without_join_field": [0] * n,
                "unjoined_example": [None] * n, "coverage": {}, "words": {}, "tokens": {}, "shards": []}

    @staticmethod
    def _add(into: dict, counts: dict):
        for k, v in counts.items():
            into[k] = into.get(k, 0) + v

    def add_input(self, acc, s):
        other = self.create_accumulator()
        other.update({k: s[k] for k in self.COUNTS})
        other.update(failed_download_reasons=dict(s["failed_download_reasons"]), bad=dict(s["bad"]),
                     examples=[(s["unit"], i, e) for i, e in enumerate(s["bad_examples"][:MAX_EXAMPLES])],
                     joined=list(s["joined"]), not_joined=list(s["not_joined"]),
                     without_join_field=list(s["without_join_field"]),
                     unjoined_example=[None if v is None else (s["unit"], v) for v in s["unjoined_example"]],
                     coverage=dict(s["coverage"]), shards=[(s["unit"], list(s["shards"]))],
                     words={f: {int(k): c for k, c in h.items()} for f, h in s["words"].items()},
                     tokens={f: {int(k): c for k, c in h.items()} for f, h in s["tokens"].items()})
        return self.merge_accumulators([acc, other])

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            for k in self.COUNTS:
                out[k] += a[k]
            for k in ("failed_download_reasons", "bad", "coverage"):
                self._add(out[k], a[k])
            for k in ("words", "tokens"):
                for field, histogram in a[k].items():
                    self._add(out[k].setdefault(field, {}), histogram)
            for k in ("joined", "not_joined", "without_join_field"):
                out[k] = [x + y for x, y in zip(out[k], a[k])]
            out["unjoined_example"] = [min((v for v in (x, y) if v is not None), default=None)
                                       for x, y in zip(out["unjoined_example"], a["unjoined_example"])]
            out["examples"] = sorted(out["examples"] + a["examples"])[:MAX_EXAMPLES]
            out["shards"] += a["shards"]
        return out

    def extract_output(self, acc):
        return {**{k: acc[k] for k in self.COUNTS}, "failed_download_reasons": acc["failed_download_reasons"],
                "bad": acc["bad"], "bad_examples": [e for _, _, e in sorted(acc["examples"])],
                "joined": acc["joined"], "not_joined": acc["not_joined"],
                "without_join_field": acc["without_join_field"],
                "unjoined_example": [None if v is None else v[1] for v in acc["unjoined_example"]],
                "coverage": acc["coverage"], "words": acc["words"], "tokens": acc["tokens"], "ids": [],
                "shards": [n for _, names in sorted(acc["shards"]) for n in names]}
