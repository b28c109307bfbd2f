"""Adds a trained teacher's image and text embeddings to training shards (MobileCLIP's reinforced data).

The record format is bigvl/data/teacher.py's; the command line is `data/add_teacher_embeddings.py`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

import numpy as np

from bigvl.data.image_ops import decode_image
from bigvl.data.records import RecordError, decode_example, encode_example, read_records, write_records
from bigvl.data.teacher import ALT_FIELD, TEACHER_KEY, pack_embedding
from bigvl.inference.run import load_run
from bigvl.inference.windowed_text import encode_texts_windowed
from bigvl.models.heads import logit_scale_of
from bigvl.parallel.storage import run_str

log = logging.getLogger(__name__)


def add_teacher_embeddings(teacher_workdir: str, in_paths: Sequence[str], out_dir: str,
                           fields: Sequence[str] | None = None, windowed: bool = False) -> dict[str, int]:
    """Writes a copy of each shard into `out_dir` (same file names) with teacher embeddings added.

    teacher_workdir: a trained two-tower run (latest checkpoint). fields: the texts to
    encode ("alt" and caption names; None = the alt-text and every caption). A record
    that does not decode is copied unchanged (training skips and counts it as usual).
    windowed: texts longer than the teacher's context are embedded as the pooled mean of overlapping
    windows (TULIP; bigvl/inference/windowed_text.py) instead of truncated.
    Returns {"records", "texts", "copied_unchanged"}. Each shard is written to a
    temporary name and renamed into place, so an interrupted run leaves no partial shard;
    `out_dir/teacher.json` (the stats and the teacher) is written last, once all are done.
    """
    run = load_run(teacher_workdir)
    if run.config.model.kind != "two_tower":
        raise ValueError(f"teacher {teacher_workdir}: model.kind {run.config.model.kind!r} is not a two-tower model")
    logit_scale = float(logit_scale_of(run.params["log_logit_scale"], run.config.model.max_logit_scale))
    os.makedirs(out_dir, exist_ok=True)
    stats = {"records": 0, "texts": 0, "copied_unchanged": 0}
    for path in in_paths:
        start = time.time()
        out = read_records(path)
        records = []  # (position, record, image, {field: text}) of the records that decode
        for i, data in enumerate(out):
            try:
                record = decode_example(data, where=f"{path}#{i}")
                image = run.encoder.prepare(decode_image(record["image"]))
                names = [ALT_FIELD] + list(record["captions"]) if fields is None else list(fields)
                texts = {name: record["alt_text"] if name == ALT_FIELD else record["captions"][name]
                         for name in names if name == ALT_FIELD or name in record["captions"]}
                if not all(isinstance(t, str) and t.strip() for t in texts.values()):
                    raise RecordError("empty or non-text field")
                records.append((i, record, image, texts))
            except (RecordError, ValueError, TypeError, KeyError) as e:
                log.warning("%s#%d: copied without teacher embeddings (%s)", path, i, str(e).splitlines()[0])
        images = run.encoder.encode_images(np.stack([image for _, _, image, _ in records])) if records else []
        flat = [text for *_, texts in records for text in texts.values()]
        encode = (lambda texts: encode_texts_windowed(run.encoder, texts)) if windowed else run.encoder.encode_texts
        text_embeds = iter(encode(flat) if flat else [])
        for (i, record, _, texts), image_embed in zip(records, images):
            stored = {name: pack_embedding(next(text_embeds)) for name in texts}
            record["extras"][TEACHER_KEY] = {"image": pack_embedding(image_embed), "texts": stored,
                                             "logit_scale": logit_scale, "model": run_str(teacher_workdir)}
            out[i] = encode_example(record)
        target = os.path.join(out_dir, os.path.basename(path))
        write_records(target + ".partial", out)
        os.replace(target + ".partial", target)
        stats["records"] += len(out)
        stats["texts"] += len(flat)
        stats["copied_unchanged"] += len(out) - len(records)
        log.info("%s: %d records, %d texts in %.1f s", target, len(out), len(flat), time.time() - start)
    with open(os.path.join(out_dir, "teacher.json"), "w") as f:
        json.dump({**stats, "teacher": run_str(teacher_workdir), "logit_scale": logit_scale, "windowed": windowed,
                   "shards": [os.path.basename(p) for p in in_paths]}, f, indent=1)
    return stats
