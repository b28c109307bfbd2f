"""Input units → bigvl ArrayRecord shards: deterministic, parallel, resumable.

    stats = convert_unit(unit, tables, options)         # one unit, in this process (the Beam pipeline's step)
    manifest = convert_all(units, tables, options, workers=4)   # the former single-host pool, tables in memory

build_shards runs `convert_unit` inside its Beam pipeline (pipeline.py), with each unit's joined
rows as its tables; `convert_all` is the process pool it replaced, kept as the byte-for-byte
reference and for the memory benchmark (benchmarks/ingest_memory.py).

Each unit writes ``train-{unit:05d}-{part:03d}.array_record`` (at most `shard_size` records
each, in the unit's order) under a ``.tmp`` name renamed when complete, then its stats file
``.stats/{unit:05d}.json`` (also renamed into place). A unit's bytes depend only on its
input, the tables and the options, so any worker count writes the same shards; a restart
skips every unit whose stats file exists and redoes the others (a killed run leaves only
``.tmp`` files and complete units). ``.stats/options.json`` holds what the output depends
on; a restart with other options stops with one line instead of mixing two conversions.

A sample becomes a record (bigvl/data/records.py) ``{id: key, image, alt_text, captions,
extras: {url, uid, sha256 when known}}``. The image is checked by decoding it; with
`max_side` > 0 a larger one is resized (longer side = max_side) and stored as JPEG.
Faulty samples (see inputs.py, or an undecodable image) and repeated keys within a unit are
skipped and counted. A table that joins under 1 % of the written images (0 included) is logged
in one line naming the table, its join, the counts and a key of each side (`join_warnings`); it
is not an error, since a small table may cover few images.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import multiprocessing
import os
import time
from typing import Any, Sequence

from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from bigvl.data.ingest.inputs import Unit, failed_downloads, read_unit
from bigvl.data.ingest.manifest import merge_stats
from bigvl.data.ingest.tables import CaptionTable, TableSpec
from bigvl.data.records import encode_example

EXTRA_FIELDS = ("url", "uid", "sha256")  # metadata kept in a record's extras
ALT_FIELD = "alt"
STATS_DIR = ".stats"
LOW_JOIN = 0.01  # a table joining fewer than this fraction of the written images is reported


class ConvertError(ValueError):
    """The output directory holds a conversion made with other options; one line."""


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """out: the output directory; alt: "txt" (the sample's caption), a metadata field or a caption name;
    max_side: resize larger images (0 = keep the bytes); shard_size: records per output file."""
    out: str
    shard_size: int = 10000
    max_side: int = 0
    alt: str = "txt"
    jpeg_quality: int = 95


FAULT_KINDS = ("tar unreadable", "parquet unreadable", "unreadable file", "no image member",
               "text is not UTF-8", "metadata is not a JSON object", "undecodable image")


def fault_kind(fault: str) -> str:
    """The kind of a sample's fault (FAULT_KINDS), the manifest's key for counting it."""
    return next((kind for kind in FAULT_KINDS if kind in fault), fault[:60])


def shard_name(unit: int, part: int) -> str:
    return f"train-{unit:05d}-{part:03d}.array_record"


def prepare_image(data: bytes, max_side: int, quality: int = 95) -> bytes:
    """Decodes `data` (raises ValueError when it does not decode); returns it unchanged, or, when its
    longer side exceeds `max_side` > 0, the image resized to that side as JPEG bytes."""
    try:
        image = Image.open(io.BytesIO(data))
        size = image.size
        if max_side and max(size) > max_side:
            scale = max_side / max(size)
            target = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            image.draft("RGB", target)  # JPEG: decode at a reduced scale ≥ target (fast, deterministic)
        image.load()
    except Exception as e:  # noqa: BLE001 (PIL raises many types for corrupt or truncated files)
        raise ValueError(f"undecodable image ({type(e).__name__}: {str(e)[:100]})") from None
    if not max_side or max(size) <= max_side:
        return data
    image = image.convert("RGB").resize(target, Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class _Writer:
    """Records → train-{unit}-{part}.array_record files of at most shard_size records, renamed when complete."""

    def __init__(self, out: str, unit: int, shard_size: int):
        self.out, self.unit, self.shard_size = out, unit, shard_size
        self.part, self.count, self.writer, self.names = 0, 0, None, []

    def write(self, record: bytes) -> None:
        if self.writer is None:
            name = shard_name(self.unit, self.part)
            self.writer = ArrayRecordWriter(os.path.join(self.out, name + ".tmp"), "group_size:1")
            self.names.append(name)
        self.writer.write(record)
        self.count += 1
        if self.count == self.shard_size:
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            path = os.path.join(self.out, self.names[-1])
            os.replace(path + ".tmp", path)
            self.writer, self.count, self.part = None, 0, self.part + 1


def _alt_text(sample, captions: dict[str, str], alt: str) -> str | None:
    if alt == "txt":
        value = sample.txt
    elif alt in captions:
        value = captions[alt]
    else:
        value = sample.meta.get(alt)
    return value if isinstance(value, str) else None


def convert_unit(unit: Unit, tables: Sequence[CaptionTable], options: ConvertOptions,
                 tokenizer=None) -> dict[str, Any]:
    """Writes the unit's shards and stats file; returns the stats (counts, lengths; see manifest.py)."""
    start = time.time()
    writer = _Writer(options.out, unit.index, options.shard_size)
    seen: set[str] = set()
    ids: list[str] = []
    bad, examples = collections.Counter(), []
    joined, not_joined, no_field = [0] * len(tables), [0] * len(tables), [0] * len(tables)
    unjoined_example: list[str | None] = [None] * len(tables)  # the first join value with no row
    coverage = collections.Counter()
    words = collections.defaultdict(collections.Counter)
    tokens = collections.defaultdict(collections.Counter)
    read = duplicates = alt_missing = 0
    for sample in read_unit(unit):
        read += 1
        fault = sample.fault
        if not fault:
            try:
                image = prepare_image(sample.image, options.max_side, options.jpeg_quality)
            except ValueError as e:
                fault = str(e)
        if fault:
            bad[fault_kind(fault)] += 1
            if len(examples) < 20:
                examples.append([sample.where, fault])
            continue
        if sample.key in seen:
            duplicates += 1
            continue
        seen.add(sample.key)
        captions: dict[str, str] = {}
        extras: dict[str, Any] = {}
        for t, table in enumerate(tables):
            value = table.join_value(sample.key, sample.meta)
            if value is None:
                no_field[t] += 1
            found = table.lookup(sample.key, sample.meta)
            if found is None:
                not_joined[t] += 1
                if unjoined_example[t] is None and value is not None:
                    unjoined_example[t] = value
            else:
                joined[t] += 1
                captions.update(found)
                extras.update(table.extras(sample.key, sample.meta))
        alt = _alt_text(sample, captions, options.alt)
        if alt is None:
            alt_missing += 1
        extras.update({k: sample.meta[k] for k in EXTRA_FIELDS if isinstance(sample.meta.get(k), str)})
        writer.write(encode_example({"id": sample.key, "image": image, "alt_text": alt or "",
                                     "captions": captions, "extras": extras}))
        ids.append(sample.key)
        for name, text in [(ALT_FIELD, alt or ""), *captions.items()]:
            if text.strip():
                coverage[name] += 1
                words[name][len(text.split())] += 1
                if tokenizer is not None:
                    tokens[name][tokenizer.count_tokens(text)] += 1
    writer.close()
    failed = failed_downloads(unit)
    stats = {
        "unit": unit.index, "input": unit.name, "shards": writer.names, "read": read, "written": len(ids),
        "failed_downloads": len(failed),
        "failed_download_reasons": dict(collections.Counter(reason for _, reason in failed)),
        "bad": dict(bad), "bad_examples": examples, "duplicates": duplicates, "alt_missing": alt_missing,
        "joined": joined, "not_joined": not_joined, "without_join_field": no_field,
        "unjoined_example": unjoined_example,
        "coverage": dict(coverage), "words": {k: dict(v) for k, v in words.items()},
        "tokens": {k: dict(v) for k, v in tokens.items()}, "ids": ids, "seconds": time.time() - start,
    }
    _write_json_atomic(os.path.join(options.out, STATS_DIR, f"{unit.index:05d}.json"), stats)
    return stats


def join_warnings(specs: Sequence[TableSpec], key_types: Sequence[str], first_keys: Sequence[str | None],
                  all_stats: Sequence[dict[str, Any]]) -> list[str]:
    """One line per table that joined fewer than LOW_JOIN of the written images (0 included): the table,
    its join, how many of how many images joined, a key of the table (`first_keys`, its first row's) and
    of an image without a row. `key_types`: the arrow type of each table's join column."""
    lines = []
    for t, spec in enumerate(specs):
        joined = sum(s["joined"][t] for s in all_stats)
        images = joined + sum(s["not_joined"][t] for s in all_stats)
        if not images or joined >= LOW_JOIN * images:
            continue
        join = spec.column if spec.column == spec.field else f"{spec.column}={spec.field}"
        image_key = next((e[t] for s in all_stats if (e := s.get("unjoined_example")) and e[t] is not None), None)
        table_key = first_keys[t]
        line = (f"{spec.path}: joined {joined} of {images} images on {join}; "
                + (f"table keys look like {table_key!r}" if table_key is not None else "the table has no keys")
                + (f", image keys like {image_key!r}" if image_key is not None
                   else f", no image has a {spec.field!r} field"))
        if key_types[t].startswith(("int", "uint")) and image_key and image_key.isdigit() and image_key[0] == "0":
            line += (f" (the table's {spec.column!r} is an integer column ({key_types[t]}), compared as its "
                     "decimal text: it cannot hold leading zeros; store the keys as strings)")
        lines.append(line)
    return lines


def _write_json_atomic(path: str, value: Any) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def _fingerprint(units: Sequence[Unit], specs: Sequence[TableSpec], options: ConvertOptions) -> dict:
    return {"options": {k: v for k, v in dataclasses.asdict(options).items() if k != "out"},
            "units": [unit.name for unit in units],
            "tables": [dataclasses.asdict(spec) for spec in specs]}


def check_fingerprint(options: ConvertOptions, units: Sequence[Unit], specs: Sequence[TableSpec]) -> None:
    """Writes OUT/.stats/options.json (what the output depends on) on a first run; raises ConvertError
    when it holds a conversion of other inputs or options. Local or remote (gs://) `options.out`."""
    from bigvl.data.ingest import beam_io  # its Beam imports happen only for remote paths
    fingerprint = json.loads(json.dumps(_fingerprint(units, specs, options)))
    fp_path = beam_io.join(options.out, STATS_DIR, "options.json")
    if beam_io.exists(fp_path):
        old = beam_io.read_json(fp_path)
        if old != fingerprint:
            diff = [k for k in fingerprint if old.get(k) != fingerprint[k]]
            raise ConvertError(f"--out {options.out} holds a conversion with other {'/'.join(diff)}; "
                               "restart with the same arguments or use a new --out")
    else:
        beam_io.write_json(fp_path, fingerprint)


_SHARED: dict[str, Any] = {}  # what forked workers inherit (tables can be large: not pickled per task)


def _convert_shared(unit: Unit) -> dict[str, Any]:
    return convert_unit(unit, _SHARED["tables"], _SHARED["options"], _SHARED["tokenizer"])


def convert_all(units: Sequence[Unit], tables: Sequence[CaptionTable], options: ConvertOptions,
                workers: int = 1, tokenizer=None, log=print) -> dict[str, Any]:
    """Converts every unit not yet done (resume) with `workers` processes; writes and returns the manifest.
    Logs a line for each table that joined under LOW_JOIN of the images (`join_warnings`).

    Raises ConvertError when `options.out` holds a conversion of other inputs or options.
    """
    stats_dir = os.path.join(options.out, STATS_DIR)
    os.makedirs(stats_dir, exist_ok=True)
    check_fingerprint(options, units, [t.spec for t in tables])
    for name in os.listdir(options.out):  # leftovers of a killed run
        if name.endswith(".tmp"):
            os.remove(os.path.join(options.out, name))
    done = {u.index for u in units if os.path.exists(os.path.join(stats_dir, f"{u.index:05d}.json"))}
    todo = [u for u in units if u.index not in done]
    log(f"{len(units)} units: {len(done)} already converted, {len(todo)} to do, {workers} worker(s)")
    start = time.time()
    if workers <= 1 or len(todo) <= 1:
        for unit in todo:
            convert_unit(unit, tables, options, tokenizer)
    else:
        _SHARED.update(tables=tables, options=options, tokenizer=tokenizer)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_convert_shared, todo):
                pass
        _SHARED.clear()
    wall = time.time() - start
    all_stats = []
    for unit in units:
        with open(os.path.join(stats_dir, f"{unit.index:05d}.json")) as f:
            all_stats.append(json.load(f))
    manifest = merge_stats(all_stats, [t.spec for t in tables], [(t.rows, t.repeated) for t in tables],
                           wall_s=wall, workers=workers, resumed_units=len(done),
                           with_tokens=tokenizer is not None,
                           written_now=sum(s["written"] for s in all_stats if s["unit"] not in done))
    with open(os.path.join(options.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    for line in join_warnings([t.spec for t in tables], [t.key_type for t in tables],
                              [next(iter(t.index), None) for t in tables], all_stats):
        log(line)
    return manifest
