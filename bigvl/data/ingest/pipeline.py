"""build_shards as one Apache Beam pipeline: input shards + caption tables → ArrayRecord shards + manifest.

    plan = plan_build(units, specs, datacompdr, options)     # TableError / ConvertError before any work
    manifest = run_build(plan, pipeline_options(beam_args, workers=4))

The same transforms on every runner (DirectRunner here, Dataflow / Flink / Spark at scale):

    units ─ read keys ──────────────── (table, join value) → unit ──┐
                 └─ join filter (Bloom bits of the units' values)   ├ CoGroupByKey per (table, value):
    table parts ─ read rows, drop values no image has ──────────────┘   the first row → (unit, captions)
    units + their joined rows ─ CoGroupByKey by unit ─ convert_unit ─ shards + .stats/UNIT.json
    stats of every unit ─ combiners (totals, faults, coverage, lengths; ids counted per id) ─ manifest.json

No table is held in one process: a table part streams its rows and keeps only those whose join
value some image has (a Bloom filter over the images' values; a false positive only costs a
shuffled row), and the keyed join brings each value's rows and images together. A unit is
converted by `convert.convert_unit`, the pool's own code, with a per-unit index of the rows
that joined it, so the shards are byte-identical to the pool's whatever the runner or worker
count; a unit writes its shards under temporary names then its stats file, so a killed run
resumes by skipping every unit with a stats file, and a retried bundle rewrites the same bytes.
DataCompDR tars join the same way, each tar a part.

Manifest differences from the pool: `repeated_join_values` counts the repeats among the rows
whose value matched an image of this run (a value no image has never leaves its reader); a
DataCompDR sample with a missing or malformed member is skipped and counted
(`tables[i].malformed_rows`, with one example) instead of stopping the run, except in the first
sample of the first tar, which is checked before any work.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from typing import Any, Sequence

from bigvl.data.ingest import beam_io
from bigvl.data.ingest.convert import STATS_DIR, ConvertError, ConvertOptions, check_fingerprint, convert_unit, join_warnings
from bigvl.data.ingest.datacompdr import DataCompDRTable, check_dr_options, dr_row, dr_spec, iter_uid_groups
from bigvl.data.ingest.inputs import Unit, read_unit
from bigvl.data.ingest.join_filter import FilterFn, filter_bits, passes
from bigvl.data.ingest.manifest import merge_stats
from bigvl.data.ingest.stats_combiner import MergeStats
from bigvl.data.ingest.table_rows import TablePart, iter_part, plan_table
from bigvl.data.ingest.tables import CaptionTable, TableError, TableSpec

NAMESPACE = "bigvl.build_shards"
RUN_SUMMARY = "run.json"


@dataclasses.dataclass(frozen=True)
class DataCompDRSource:
    """--datacompdr tars and how to read their embeddings."""
    paths: tuple[str, ...]
    teacher: int = 0
    augmentation: int = 0
    logit_scale: float = 100.0


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything a run needs, checked: units to convert and done, table parts, options."""
    units: tuple[Unit, ...]
    todo: tuple[Unit, ...]
    specs: tuple[TableSpec, ...]  # caption tables, then DataCompDR's when given
    key_types: tuple[str, ...]
    parts: tuple[TablePart, ...]
    datacompdr: DataCompDRSource | None
    options: ConvertOptions
    tokenizer: str = ""

    @property
    def done(self) -> int:
        return len(self.units) - len(self.todo)


def plan_build(units: Sequence[Unit], specs: Sequence[TableSpec], datacompdr: DataCompDRSource | None,
               options: ConvertOptions, tokenizer: str = "", log=print) -> BuildPlan:
    """Checks every table (schema, columns) and the output directory's fingerprint, removes a killed
    run's temporaries and finds the units already converted. Raises TableError / ConvertError (one line)."""
    specs, key_types, parts = list(specs), [], []
    for t, spec in enumerate(specs):
        table_parts, key_type = plan_table(t, spec)
        parts += table_parts
        key_types.append(key_type)
    if datacompdr:
        check_dr_options(datacompdr.teacher)
        t = len(specs)
        first = next(iter_uid_groups(datacompdr.paths[0]), None)  # a malformed member: one line before any work
        if first is not None:
            dr_row(first[1], f"--datacompdr {datacompdr.paths[0]}: sample {first[0]}", datacompdr.teacher,
                   datacompdr.augmentation, datacompdr.logit_scale)
        specs.append(dr_spec(datacompdr.paths))
        key_types.append("string")
        parts += [TablePart(t, path, i) for i, path in enumerate(datacompdr.paths)]
    stats_dir = beam_io.join(options.out, STATS_DIR)
    beam_io.makedirs(stats_dir)
    check_fingerprint(options, units, specs)
    beam_io.remove_temporaries(options.out)
    beam_io.remove_temporaries(stats_dir)
    todo = tuple(u for u in units if not beam_io.exists(beam_io.join(stats_dir, f"{u.index:05d}.json")))
    return BuildPlan(tuple(units), todo, tuple(specs), tuple(key_types), tuple(parts), datacompdr, options, tokenizer)


# ---------------------------------------------------------------- transforms (top-level: picklable)


@contextlib.contextmanager
def _localized(unit: Unit):
    """`unit` with local paths (a remote tar and its sidecar parquet fetched)."""
    if not beam_io.is_remote(unit.path):
        yield unit
        return
    with beam_io.local_copy(unit.path) as path:
        sidecar = unit.path[:-len(".tar")] + ".parquet" if unit.kind == "tar" else ""
        if sidecar and beam_io.exists(sidecar):
            with beam_io.local_copy(sidecar) as side:
                os.replace(side, path[:-len(".tar")] + ".parquet")
                yield dataclasses.replace(unit, path=path)
                return
        yield dataclasses.replace(unit, path=path)


def _join_values(element, specs: Sequence[TableSpec]):
    """((table, join value), unit) for each sample of a unit with an image, each table it has a value for."""
    _, unit = element
    probes = [CaptionTable(spec, {}, 0, 0) for spec in specs]
    seen = set()
    with _localized(unit) as local:
        for sample in read_unit(local):
            if sample.image is None:
                continue
            for t, probe in enumerate(probes):
                value = probe.join_value(sample.key, sample.meta)
                if value is not None and (t, value) not in seen:
                    seen.add((t, value))
                    yield (t, value), unit.index


def _read_part(part: TablePart, specs: Sequence[TableSpec], datacompdr: DataCompDRSource | None, bits):
    """The part's rows whose value passes the filter: ((table, value), (row, captions, teacher record));
    tagged 'sizes': ((table, "rows"), n), ((table, "first"), (row, value)) and, for DataCompDR samples
    with a missing or malformed member (skipped and counted), ((table, "malformed"), n) and
    ((table, "malformed_example"), (row, message))."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    t, spec, count, first, malformed, example = part.table, specs[part.table], 0, None, 0, None
    if datacompdr is not None and t == len(specs) - 1:
        for pos, (key, members) in enumerate(iter_uid_groups(part.path)):
            count += 1
            row = (part.first_row, pos)
            try:
                uid = str(json.loads(members["json"])["uid"])
            except (KeyError, ValueError):
                uid = None
            if first is None and uid is not None:
                first = (row, uid)
            if uid is None or passes(bits, t, uid):
                try:
                    uid, captions, record = dr_row(members, f"--datacompdr {part.path}: sample {key}", datacompdr.teacher,
                                                   datacompdr.augmentation, datacompdr.logit_scale)
                except TableError as e:
                    malformed += 1
                    example = example or (row, str(e))
                    continue
                yield (t, str(uid)), (row, captions, record)
    else:
        for row, value, captions in iter_part(spec, part):
            count += 1
            if value is None:
                continue
            if first is None:
                first = ((row,), value)
            if passes(bits, t, value):
                yield (t, value), ((row,), captions, None)
    Metrics.counter(NAMESPACE, f"table_{t}_rows").inc(count)
    sizes = [("rows", count), ("first", first), ("malformed", malformed), ("malformed_example", example)]
    for kind, value in sizes:
        if value is not None:
            yield beam.pvalue.TaggedOutput("sizes", ((t, kind), value))


def _pick(element):
    """The first row of a joined value → (unit, (table, value, captions, teacher)) per unit that has it;
    tagged 'repeated': (table, rows - 1)."""
    import apache_beam as beam
    (t, value), groups = element
    units, rows = sorted(set(groups["refs"])), list(groups["rows"])
    if not units or not rows:
        return
    _, captions, record = min(rows, key=lambda r: r[0])
    if len(rows) > 1:
        yield beam.pvalue.TaggedOutput("repeated", (t, len(rows) - 1))
    for unit in units:
        yield unit, (t, value, captions, record)


class _ConvertUnit:
    """One unit and its joined rows → its shards and stats (convert.convert_unit), for beam.ParDo."""

    def __init__(self, plan: BuildPlan):
        self.plan = plan
        self.tokenizer = None

    def setup(self):
        if self.plan.tokenizer:
            from bigvl.data.tokenizer import Tokenizer
            self.tokenizer = Tokenizer(self.plan.tokenizer)

    def process(self, element):
        from apache_beam.metrics import Metrics
        _, groups = element
        unit = groups["unit"][0]
        specs = self.plan.specs
        indexes = [{} for _ in specs]
        teachers: dict[str, Any] = {}
        for t, value, captions, record in groups["joined"]:
            indexes[t][value] = captions
            if record is not None:
                teachers[value] = record
        tables = [CaptionTable(spec, indexes[t], 0, 0) for t, spec in enumerate(specs)]
        if self.plan.datacompdr:
            tables[-1] = DataCompDRTable(specs[-1], indexes[-1], teachers, 0, 0)
        out = self.plan.options.out
        with _localized(unit) as local, tempfile.TemporaryDirectory(prefix="bigvl_unit_") as stage:
            if beam_io.is_remote(out):
                os.makedirs(os.path.join(stage, STATS_DIR))
                stats = convert_unit(local, tables, dataclasses.replace(self.plan.options, out=stage), self.tokenizer)
                for name in stats["shards"]:
                    beam_io.publish(os.path.join(stage, name), beam_io.join(out, name))
                beam_io.publish(os.path.join(stage, STATS_DIR, f"{unit.index:05d}.json"),
                                beam_io.join(out, STATS_DIR, f"{unit.index:05d}.json"))
            else:
                stats = convert_unit(local, tables, self.plan.options, self.tokenizer)
        stats["input"] = unit.name
        Metrics.counter(NAMESPACE, "written").inc(stats["written"])
        Metrics.counter(NAMESPACE, "read").inc(stats["read"])
        for kind, n in stats["bad"].items():
            Metrics.counter(NAMESPACE, f"bad: {kind}").inc(n)
        yield stats


def _read_stats(index: int, out: str) -> dict:
    return beam_io.read_json(beam_io.join(out, STATS_DIR, f"{index:05d}.json"))


def _write_summary(_, out: str, stats, written_now, across_units, sums, firsts, repeated):
    def by_table(values, kind):
        return {str(t): v for (t, k), v in values.items() if k == kind}
    beam_io.write_json(beam_io.join(out, STATS_DIR, RUN_SUMMARY), {
        "stats": stats, "written_now": written_now, "across_units": across_units,
        "rows": by_table(sums, "rows"), "malformed": by_table(sums, "malformed"),
        "first_keys": by_table(firsts, "first"), "malformed_example": by_table(firsts, "malformed_example"),
        "repeated": {str(t): n for t, n in repeated.items()}})
    return 0


def build_pipeline(p, plan: BuildPlan) -> None:
    """Adds the conversion's transforms to the Beam pipeline `p` (module docstring)."""
    import apache_beam as beam
    out, n = plan.options.out, len(plan.specs)
    units = p | "units" >> beam.Create([(u.index, u) for u in plan.todo]) | "spread units" >> beam.Reshuffle()
    groups = {"unit": units}
    sizes = repeated = None
    if plan.specs:
        refs = units | "join values" >> beam.FlatMap(_join_values, plan.specs)
        bits = (refs | "values" >> beam.Keys()
                | "join filter" >> beam.CombineGlobally(_beam_combine(FilterFn(filter_bits(plan.todo)))))
        rows = (p | "table parts" >> beam.Create(list(plan.parts)) | "spread parts" >> beam.Reshuffle()
                | "read rows" >> beam.FlatMap(_read_part, plan.specs, plan.datacompdr, beam.pvalue.AsSingleton(bits))
                .with_outputs("sizes", main="rows"))
        sizes = rows.sizes
        picked = ({"refs": refs, "rows": rows.rows} | "join" >> beam.CoGroupByKey()
                  | "first row" >> beam.FlatMap(_pick).with_outputs("repeated", main="joined"))
        groups["joined"] = picked.joined
        repeated = picked.repeated
    else:
        groups["joined"] = p | "no tables" >> beam.Create([])
    new = (groups | "by unit" >> beam.CoGroupByKey()
           | "convert" >> beam.ParDo(_beam_dofn(_ConvertUnit(plan))))
    todo = {u.index for u in plan.todo}
    done = p | "done units" >> beam.Create([u.index for u in plan.units if u.index not in todo]) \
        | "read done stats" >> beam.Map(_read_stats, out)
    every = (new, done) | "all units" >> beam.Flatten()
    merged = every | "merge stats" >> beam.CombineGlobally(_beam_combine(MergeStats(n)))
    written_now = new | "written" >> beam.Map(lambda s: s["written"]) | "sum written" >> beam.CombineGlobally(sum)
    across = (every | "ids" >> beam.FlatMap(lambda s: s["ids"]) | "per id" >> beam.combiners.Count.PerElement()
              | "repeats" >> beam.Map(lambda kv: kv[1] - 1) | "sum repeats" >> beam.CombineGlobally(sum))
    empty = p | "no sizes" >> beam.Create([])
    sizes = sizes if sizes is not None else empty
    sums = (sizes | "counts" >> beam.Filter(lambda kv: kv[0][1] in ("rows", "malformed"))
            | "sum counts" >> beam.CombinePerKey(sum))
    firsts = (sizes | "firsts" >> beam.Filter(lambda kv: kv[0][1] in ("first", "malformed_example"))
              | "as tuples" >> beam.Map(lambda kv: (kv[0], tuple(kv[1]))) | "min first" >> beam.CombinePerKey(min)
              | "first value" >> beam.Map(lambda kv: (kv[0], kv[1][1])))
    repeats = (repeated if repeated is not None else p | "no repeats" >> beam.Create([])) \
        | "sum repeated" >> beam.CombinePerKey(sum)
    side = beam.pvalue
    _ = (p | "once" >> beam.Create([None])
         | "summary" >> beam.Map(_write_summary, out, side.AsSingleton(merged), side.AsSingleton(written_now),
                                 side.AsSingleton(across), side.AsDict(sums), side.AsDict(firsts),
                                 side.AsDict(repeats)))


def _beam_combine(fn):
    """A beam.CombineFn delegating to `fn` (plain classes above keep Beam out of their definitions)."""
    import apache_beam as beam

    class Combine(beam.CombineFn):
        def create_accumulator(self):
            return fn.create_accumulator()

        def add_input(self, acc, x):
            return fn.add_input(acc, x)

        def merge_accumulators(self, accs):
            return fn.merge_accumulators(accs)

        def extract_output(self, acc):
            return fn.extract_output(acc)
    return Combine()


def _beam_dofn(fn):
    import apache_beam as beam

    class Do(beam.DoFn):
        def setup(self):
            fn.setup()

        def process(self, element):
            yield from fn.process(element)
    return Do()


def run_build(plan: BuildPlan, options, log=print) -> dict[str, Any]:
    """Runs the pipeline with the Beam `options` (beam_io.pipeline_options) and writes DIR/manifest.json;
    returns the manifest. Logs the plan and a line per table that joined under 1 % of the images."""
    import apache_beam as beam
    runner = beam_io.runner_name(options)
    workers = options.get_all_options().get("direct_num_workers") if runner == "DirectRunner" else None
    log(f"{len(plan.units)} units: {plan.done} already converted, {len(plan.todo)} to do, runner {runner}"
        + (f" with {workers} worker(s)" if workers else ""))
    start = time.time()
    with beam.Pipeline(runner=beam_io.beam_runner(options), options=options) as p:  # never Prism
        build_pipeline(p, plan)
    wall = time.time() - start
    out = plan.options.out
    summary = beam_io.read_json(beam_io.join(out, STATS_DIR, RUN_SUMMARY))
    n = len(plan.specs)
    rows = [summary["rows"].get(str(t), 0) for t in range(n)]
    repeated = [summary["repeated"].get(str(t), 0) for t in range(n)]
    manifest = merge_stats([summary["stats"]], plan.specs, list(zip(rows, repeated)), wall_s=wall,
                           workers=workers or 0, resumed_units=plan.done, with_tokens=bool(plan.tokenizer),
                           written_now=summary["written_now"])
    manifest["duplicate_keys"]["across_units"] = summary["across_units"]
    manifest["units"], manifest["runner"] = len(plan.units), runner
    for t, table in enumerate(manifest["tables"]):
        if summary["malformed"].get(str(t)):
            table.update(malformed_rows=summary["malformed"][str(t)], malformed_example=summary["malformed_example"][str(t)])
    with beam_io.open_file(beam_io.join(out, "manifest.json"), "wb") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
    firsts = [summary["first_keys"].get(str(t)) for t in range(n)]
    for line in join_warnings(plan.specs, plan.key_types, firsts, [summary["stats"]]):
        log(line)
    return manifest


__all__ = ["BuildPlan", "ConvertError", "DataCompDRSource", "build_pipeline", "plan_build", "run_build"]
