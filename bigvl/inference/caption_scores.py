"""CLIP scores of each record's texts, stored in its extras (as Recap-DataComp-1B ships `re_clip_score`).

    stats = score_captions(load_run("workdirs/clip"), paths, "/tmp/scored", fields=["alt", "gen"])

The command line is `data/score_captions.py`. The score of a text is the raw cosine
similarity, in [-1, 1], of the run's L2-normalised image and text embeddings
(`Encoder.encode_images` of the centre-resized image, `Encoder.encode_texts`): not ×100
and not clipped at 0 (CLIPScore's w · max(cos, 0) with w = 2.5, and Recap-DataComp-1B's
re_clip_score, are rescalings of it). It is stored as
`extras[SCORE_KEY] = {"alt": cos, "<caption name>": cos, ...}` (float), merged into an
existing dict, for the alt-text ("alt") and each caption of `fields` the record has (default:
the alt-text and every caption). `data.min_caption_score` (bigvl/data/caption_strategies.py)
reads it. One output shard per input shard, written and resumed like recaptioning
(`bigvl.inference.shard_transform`: a restart with another model or other fields stops with
one line); OUT/score_manifest.json holds counts and the mean score
per field. Records that do not decode (or whose image does not) are copied unchanged and counted.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from bigvl.data.caption_strategies import SCORE_KEY
from bigvl.data.image_ops import decode_image
from bigvl.data.records import RecordError, decode_example, encode_example, read_records
from bigvl.inference.shard_transform import read_all_stats, run_identity, transform_shards
from bigvl.parallel.storage import run_str

log = logging.getLogger(__name__)

ALT = "alt"
MANIFEST = "score_manifest.json"
STATE = "score_captions"


def record_texts(record: dict, fields: Sequence[str] | None) -> dict[str, str]:
    """{field: text} of the record's non-empty texts among `fields` ("alt" = the alt-text; None = all)."""
    names = [ALT] + list(record["captions"]) if fields is None else list(fields)
    texts = {}
    for name in names:
        text = record["alt_text"] if name == ALT else record["captions"].get(name)
        if isinstance(text, str) and text.strip():
            texts[name] = text
    return texts


def cosine_scores(encoder, images: np.ndarray, texts: list[dict[str, str]]) -> list[dict[str, float]]:
    """images uint8 [N,S,S,3] and N {field: text} → N {field: cosine of image and text embedding}."""
    image_embeds = np.asarray(encoder.encode_images(images), np.float64)
    flat = [t for per in texts for t in per.values()]
    text_embeds = iter(np.asarray(encoder.encode_texts(flat), np.float64) if flat else [])
    return [{name: float(image_embeds[i] @ next(text_embeds)) for name in per} for i, per in enumerate(texts)]


def score_shard(path: str, encoder, fields: Sequence[str] | None) -> tuple[list[bytes], dict]:
    """(output records of one shard, stats {records, faulty, texts, sums {field: Σ score}, counts})."""
    raw = read_records(path)
    out = list(raw)
    todo = []
    stats = {"records": len(raw), "faulty": 0, "texts": 0, "sums": {}, "counts": {}}
    for i, data in enumerate(raw):
        try:
            record = decode_example(data, where=f"{path}#{i}")
            todo.append((i, record, encoder.prepare(decode_image(record["image"])),
                         record_texts(record, fields)))
        except (RecordError, ValueError, TypeError, OSError) as e:
            log.warning("%s#%d: copied unscored (%s)", path, i, str(e).splitlines()[0] if str(e) else type(e).__name__)
            stats["faulty"] += 1
    if todo:
        scores = cosine_scores(encoder, np.stack([im for _, _, im, _ in todo]), [t for *_, t in todo])
        for (i, record, _, _), per in zip(todo, scores):
            stored = record["extras"].get(SCORE_KEY)
            record["extras"][SCORE_KEY] = {**(stored if isinstance(stored, dict) else {}), **per}
            out[i] = encode_example(record)
            for name, value in per.items():
                stats["sums"][name] = stats["sums"].get(name, 0.0) + value
                stats["counts"][name] = stats["counts"].get(name, 0) + 1
            stats["texts"] += len(per)
    return out, stats


def score_captions(run, in_paths: Sequence[str], out_dir: str, fields: Sequence[str] | None = None,
                   workdir: str = "") -> dict:
    """Scores every record of `in_paths` into `out_dir`; returns the manifest (also OUT/score_manifest.json).

    run: a loaded two-tower run (`bigvl.inference.run.load_run`); workdir: where it came from.
    Raises OptionsMismatch (a ValueError), writing nothing, when `out_dir` holds scores of
    another model (`run_identity`) or other `fields` (`shard_transform.check_options`).
    """
    if "log_logit_scale" not in run.params:
        raise ValueError(f"--model: model.kind {run.config.model.kind!r} is not a contrastive two-tower model")
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    options = {"model": run_identity(run, workdir), "fields": list(fields) if fields else "all"}
    transform_shards(in_paths, out_dir, lambda path: score_shard(path, run.encoder, fields), STATE,
                     jax.process_index(), jax.process_count(), options=options)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("bigvl score_captions: all shards written")
    stats = read_all_stats(in_paths, out_dir, STATE)
    sums, counts = {}, {}
    for s in stats.values():
        for name in s["sums"]:
            sums[name] = sums.get(name, 0.0) + s["sums"][name]
            counts[name] = counts.get(name, 0) + s["counts"][name]
    manifest = {"records": sum(s["records"] for s in stats.values()),
                "faulty": sum(s["faulty"] for s in stats.values()),
                "texts": sum(s["texts"] for s in stats.values()),
                "mean_score": {name: sums[name] / counts[name] for name in sorted(sums)}, "counts": counts,
                "score": "raw cosine of L2-normalised image and text embeddings, in [-1, 1]",
                "key": f"extras[{SCORE_KEY!r}]", "fields": list(fields) if fields else "all",
                "model": {"workdir": run_str(workdir) if workdir else "", "step": int(run.step)},
                "wall_seconds": round(time.perf_counter() - start, 2)}
    if jax.process_index() == 0:
        with open(os.path.join(out_dir, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
    return manifest
