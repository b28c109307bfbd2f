"""Recaptioning a corpus: a trained captioner writes a caption into every record of ArrayRecord shards.

    manifest = recaption(load_run("workdirs/coca"), paths, "/tmp/recaptioned", field="gen",
                         cfg=DecodeConfig(method="greedy", max_length=32), seed=0, only_missing="short")

The command line is `data/recaption.py`. Every input shard gives one output shard of the same
name holding the same records in the same order, each with `captions[field]` added (a record
is re-encoded with `bigvl.data.records.encode_example`; every other field keeps its bytes).
Records that do not decode (or whose image does not) are copied unchanged and counted
(`faulty`, listed as "PATH#POSITION"). Decoding is batched and KV-cached (`bigvl.inference.decoding`) with the images
of a batch sharded over this process's devices; with several processes each takes its own
input shards (shard i → process i % process_count) and process 0 writes the manifest.

Determinism: greedy and beam search depend on the image (and condition) only; `sample`
draws each record's tokens from its own key, derived from (seed, record id)
(`record_key`), so a caption does not depend on which records share its batch. Shards are
written under a temporary name and renamed when complete (`shard_transform`): a killed
run restarted with the same arguments skips finished shards and ends with byte-identical
shards (the per-shard stats in OUT/.recaption and the manifest hold wall times, so those
differ). A restart whose options differ (`recaption_options`: the captioner's identity,
field, cond, decode settings, seed, only_missing) stops with one line naming them, before
writing anything (`shard_transform.check_options`).

`only_missing=FIELD` (the scarce-caption setting): a record whose captions[FIELD] is a
non-empty text is not decoded; it gets captions[field] = captions[FIELD] (a true caption is
kept where one exists, so every record carries `field`). The others are decoded.

Degenerate caption (`is_degenerate`): lowercased, split on whitespace into words; the
caption is degenerate when some n-gram with 2 ≤ n ≤ 4 occurs at ≥ 3 positions
(overlapping occurrences count), or one word occurs ≥ 4 times in a row. Empty: no
non-whitespace character. Both are counted and their record ids listed (first
`MAX_LISTED` in shard order) in the manifest; they are still written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from bigvl.data.image_ops import center_resize, decode_image
from bigvl.data.length_prefix import strip_length_prefix
from bigvl.data.pipeline import scan_shards
from bigvl.data.records import RecordError, decode_example, encode_example, read_records
from bigvl.inference.decoding import DecodeConfig, make_decode_fn
from bigvl.inference.shard_transform import check_options, my_shards, read_all_stats, run_identity, transform_shards
from bigvl.parallel.mesh import MESH_AXES, batch_sharding, replicated
from bigvl.parallel.storage import run_str

log = logging.getLogger(__name__)

MANIFEST = "recaption_manifest.json"
STATE = "recaption"  # per-shard stats: OUT/.recaption/NAME.json
MAX_LISTED = 100
CONDITIONS = ("alt",)
GROUP_BATCHES = 8  # a shard's images are decoded from JPEG this many batches at a time


def record_key(seed: int, record_id: str) -> np.ndarray:
    """Raw threefry key data uint32 [2] of one record: the first 8 bytes of sha256(f"{seed}/{record_id}")."""
    digest = hashlib.sha256(f"{int(seed)}/{record_id}".encode()).digest()
    return np.frombuffer(digest[:8], dtype="<u4").astype(np.uint32)


def is_degenerate(text: str) -> bool:
    """True when a 2..4-gram of words occurs at ≥ 3 positions or a word occurs ≥ 4 times in a row.

    Words: `text.lower().split()`. "a b a b a b" (the 2-gram "a b" at positions 0, 2, 4) and
    "red red red red" are degenerate; "a red circle left of a blue circle" is not.
    """
    words = text.lower().split()
    run = 1
    for previous, word in zip(words, words[1:]):
        run = run + 1 if word == previous else 1
        if run >= 4:
            return True
    for n in (2, 3, 4):
        counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        if counts and max(counts.values()) >= 3:
            return True
    return False


def local_mesh() -> Mesh:
    """This process's devices as a mesh with all of them on the `data` axis (the batch axis)."""
    devices = np.array(jax.local_devices()).reshape(-1, 1, 1)
    return Mesh(devices, MESH_AXES)


def local_params(params, mesh: Mesh):
    """The params replicated on `mesh` (a process-local copy of replicated global params)."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if not a.is_fully_replicated:
                raise ValueError("recaption replicates the captioner on each process's devices; a param "
                                 f"of shape {a.shape} is sharded across processes (load the run with a data-only mesh)")
            a = a.addressable_data(0)
        return np.asarray(a)
    return jax.device_put(jax.tree.map(one, params), replicated(mesh))


@dataclasses.dataclass
class Recaptioner:
    """Decodes captions for uint8 images [N,S,S,3] (+ condition texts) with per-record keys, in chunks."""
    captioner: object  # bigvl.inference.decoding.Captioner
    params: object
    mesh: Mesh
    cfg: DecodeConfig
    batch_size: int
    on_chunk: object = None  # called with the number of captions of each chunk decoded

    def __post_init__(self):
        devices = self.mesh.devices.size
        self.batch_size = -(-self.batch_size // devices) * devices  # a multiple of the devices
        self._fn = make_decode_fn(self.captioner.model, self.cfg, self.captioner.rules)

    def __call__(self, images: np.ndarray, cond_texts: Sequence[str] | None, keys: np.ndarray) -> list[str]:
        """images uint8 [N,S,S,3], N condition texts (or None), keys uint32 [N,2] → N captions."""
        c = self.captioner
        inputs = {"image": np.asarray(images), "key": np.asarray(keys, np.uint32)}
        if c.needs_condition:
            inputs["cond"] = c.tokenizer.encode(list(cond_texts), c.context_length)
        sharding, chunk, n = batch_sharding(self.mesh), self.batch_size, len(images)
        rows = []
        for start in range(0, n, chunk):
            batch = {}
            for name, value in inputs.items():
                part = value[start:start + chunk]
                if len(part) < chunk:  # pad the last chunk by repeating its last row (one compiled shape)
                    part = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
                batch[name] = jax.device_put(part, sharding)
            out = self._fn(self.params, batch["image"], batch.get("cond"), batch["key"])
            rows.append(np.asarray(out)[:min(chunk, n - start)])
            if self.on_chunk is not None:
                self.on_chunk(len(rows[-1]))
        tokens = np.concatenate(rows) if rows else np.zeros((0, self.cfg.max_length), np.int32)
        texts = [c.tokenizer.decode(row) for row in tokens]
        return [strip_length_prefix(t) for t in texts] if self.cfg.prefix else texts  # "N words:" forced, removed


def _present(captions: dict, name: str) -> bool:
    value = captions.get(name)
    return isinstance(value, str) and bool(value.strip())


def recaption_shard(path: str, decoder: Recaptioner, image_size: int, field: str, seed: int,
                    only_missing: str = "", cond: str = "") -> tuple[list[bytes], dict]:
    """(output records of one shard, its stats): see the module docstring.

    stats: records, decoded, copied (only_missing), faulty, empty, degenerate, and the ids
    of the empty / degenerate ones (first MAX_LISTED), lengths (words of each decoded caption).
    """
    start = time.perf_counter()
    raw = read_records(path)
    out = list(raw)
    pending = []  # (position, record) of the records to decode
    stats = {"records": len(raw), "decoded": 0, "copied": 0, "faulty": 0, "faulty_ids": []}

    def faulty(where, e):
        log.warning("%s: copied unchanged (%s)", where, str(e).splitlines()[0] if str(e) else type(e).__name__)
        stats["faulty"] += 1
        if len(stats["faulty_ids"]) < MAX_LISTED:
            stats["faulty_ids"].append(where)

    for i, data in enumerate(raw):
        try:
            record = decode_example(data, where=f"{path}#{i}")
            if only_missing and _present(record["captions"], only_missing):
                record["captions"][field] = record["captions"][only_missing]
                out[i] = encode_example(record)
                stats["copied"] += 1
            elif cond and not isinstance(record["alt_text"], str):
                raise RecordError(f"alt_text is {type(record['alt_text']).__name__}, not text")
            else:
                pending.append((i, record))
        except (RecordError, ValueError, TypeError) as e:
            faulty(f"{path}#{i}", e)
    empty, degenerate, lengths = [], [], []
    group = decoder.batch_size * GROUP_BATCHES  # images decoded (held in memory) at a time
    for lo in range(0, len(pending), group):
        todo = []  # (position, record, image)
        for i, record in pending[lo:lo + group]:
            try:
                todo.append((i, record, center_resize(decode_image(record["image"]), image_size)))
            except (ValueError, OSError) as e:
                faulty(f"{path}#{i}", e)
        if not todo:
            continue
        texts = decoder(np.stack([image for _, _, image in todo]),
                        [record["alt_text"] for _, record, _ in todo] if cond else None,
                        np.stack([record_key(seed, record["id"]) for _, record, _ in todo]))
        for (i, record, _), text in zip(todo, texts):
            record["captions"][field] = text
            out[i] = encode_example(record)
            lengths.append(len(text.split()))
            if not text.strip():
                empty.append(record["id"])
            elif is_degenerate(text):
                degenerate.append(record["id"])
    stats.update(decoded=len(lengths), empty=len(empty), degenerate=len(degenerate), empty_ids=empty[:MAX_LISTED],
                 degenerate_ids=degenerate[:MAX_LISTED], lengths=lengths,
                 decode_seconds=round(time.perf_counter() - start, 3))
    return out, stats


def summarize(shard_stats: dict[str, dict]) -> dict:
    """The manifest's totals over every shard's stats (ids capped at MAX_LISTED, in shard order)."""
    names = sorted(shard_stats)
    total = {k: sum(shard_stats[n][k] for n in names) for k in ("records", "decoded", "copied", "faulty",
                                                                  "empty", "degenerate")}
    for key in ("empty_ids", "degenerate_ids", "faulty_ids"):
        total[key] = [i for n in names for i in shard_stats[n][key]][:MAX_LISTED]
    lengths = np.array([x for n in names for x in shard_stats[n]["lengths"]], float)
    total["length_words"] = ({f"p{q}": float(np.percentile(lengths, q)) for q in (0, 5, 25, 50, 75, 95, 100)}
                             | {"mean": float(lengths.mean())}) if len(lengths) else {}
    total["decode_seconds"] = round(sum(shard_stats[n]["decode_seconds"] for n in names), 2)  # over every run
    total["shards"] = {n: {k: shard_stats[n][k] for k in ("records", "decoded", "copied", "faulty", "empty",
                                                          "degenerate")} for n in names}
    return total


def recaption_options(run, field: str, cfg: DecodeConfig, seed: int, only_missing: str, cond: str,
                      workdir: str = "") -> dict:
    """What decides the bytes of a recaptioned shard besides its input (OUT/.recaption/options.json);
    batch_size does not (per-record keys)."""
    return {"captioner": run_identity(run, workdir), "field": field, "cond": cond,
            "decode": dataclasses.asdict(cfg), "seed": int(seed), "only_missing": only_missing}


def recaption(run, in_paths: Sequence[str], out_dir: str, field: str, cfg: DecodeConfig = DecodeConfig(),
              seed: int = 0, batch_size: int = 256, only_missing: str = "", cond: str | None = None,
              progress: bool = True, workdir: str = "") -> dict:
    """Recaptions every record of `in_paths` into `out_dir` (see the module docstring); returns the manifest.

    run: a loaded captioner run (`bigvl.inference.run.load_run`, model.kind coca | clips);
    workdir: where it was loaded from (recorded in the manifest).
    cond: "alt" conditions on the alt-text (CLIPS needs it; None = "alt" for CLIPS, none for
    CoCa). The manifest (OUT/recaption_manifest.json, written by process 0 once every shard
    is done) holds the totals of `summarize`, wall_seconds and captions_per_second of this
    invocation (decoded captions / wall time; a resumed run counts what it decoded), the
    decode settings and the captioner's workdir and step. Raises OptionsMismatch (a ValueError),
    writing nothing, when `out_dir` holds a run with other options (`recaption_options`).
    """
    captioner = run.encoder.captioner
    if captioner is None:
        raise ValueError(f"model.kind {run.config.model.kind!r} has no caption decoder: pass a CoCa or CLIPS run")
    if cond is None:
        cond = "alt" if captioner.needs_condition else ""
    if cond and cond not in CONDITIONS:
        raise ValueError(f"--cond {cond!r}: the only condition is 'alt' (the record's alt-text)")
    if captioner.needs_condition != bool(cond):
        raise ValueError(f"model.kind {run.config.model.kind!r} " + (
            "captions an image given its alt-text: pass --cond alt" if captioner.needs_condition
            else "takes no condition text: drop --cond"))
    if cfg.max_length > run.config.model.decoder.context_length:
        raise ValueError(f"--max_length {cfg.max_length} exceeds the captioner's model.decoder.context_length "
                         f"{run.config.model.decoder.context_length}")
    if not in_paths:
        raise ValueError("no input shards")
    start = time.perf_counter()
    pid, count = jax.process_index(), jax.process_count()
    options = recaption_options(run, field, cfg, seed, only_missing, cond, workdir)
    check_options(out_dir, STATE, options, pid)  # before building the decoder: a mismatch stops at once
    mesh = local_mesh()
    bar = None
    if progress and pid == 0:
        mine = [p for p in my_shards(in_paths, pid, count)
                if not os.path.exists(os.path.join(out_dir, os.path.basename(p)))]
        bar = tqdm(total=scan_shards(mine, "--in").num_records if mine else 0, unit=" records",
                   desc="recaption", smoothing=0.1)
    decoder = Recaptioner(captioner, local_params(run.params, mesh), mesh, cfg, batch_size,
                          on_chunk=bar.update if bar is not None else None)
    decoded_here = [0]

    def transform(path):
        records, stats = recaption_shard(path, decoder, run.encoder.image_size, field, seed, only_missing, cond)
        decoded_here[0] += stats["decoded"]
        if bar is not None:  # decoded ones were counted chunk by chunk; now the copied and faulty
            bar.update(stats["records"] - stats["decoded"])
        return records, stats

    transform_shards(in_paths, out_dir, transform, STATE, pid, count, options=options)
    if bar is not None:
        bar.close()
    if count > 1:
        multihost_utils.sync_global_devices("bigvl recaption: all shards written")
    wall = time.perf_counter() - start
    manifest = {**summarize(read_all_stats(in_paths, out_dir, STATE)),
                "field": field, "only_missing": only_missing, "cond": cond, "seed": seed,
                "decode": dataclasses.asdict(cfg), "batch_size": decoder.batch_size,
                "captioner": {"workdir": run_str(workdir) if workdir else "",
                              "step": int(run.step), "kind": run.config.model.kind},
                "processes": count, "devices_per_process": mesh.devices.size,
                "decoded_this_run": decoded_here[0], "wall_seconds": round(wall, 2),
                "captions_per_second": round(decoded_here[0] / wall, 2) if wall > 0 else 0.0}
    if pid == 0:
        with open(os.path.join(out_dir, MANIFEST + ".partial"), "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(os.path.join(out_dir, MANIFEST + ".partial"), os.path.join(out_dir, MANIFEST))
    return manifest
