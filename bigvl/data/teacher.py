"""Stored teacher embeddings (MobileCLIP's reinforced data): writing them, reading them back.

A reinforced record carries, in ``extras["teacher"]``, a trained teacher's embeddings of
its image and of each of its texts, so a student distils from the teacher without running
it (`loss.distill_weight`, `bigvl.losses.contrastive.distillation_loss`):

    {"image": bytes float16 [Dt], "texts": {"alt": bytes, "<caption name>": bytes, ...},
     "logit_scale": float, "model": str (the teacher's workdir)}

The image embedding is of the centre-resized image (MobileCLIP stores one per stored
augmentation; a random crop of the student sees a slightly different view). Texts are
encoded at the teacher's context length (longer ones truncated, as the teacher reads them).

    python data/add_teacher_embeddings.py --teacher RUN_WORKDIR --in 'world/train-*' --out DIR
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Sequence

import numpy as np

from bigvl.data.records import RecordError

log = logging.getLogger(__name__)

TEACHER_KEY = "teacher"
ALT_FIELD = "alt"  # the alt-text's name among the teacher's texts


def _pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, "<f2").tobytes()


def _unpack(data: Any, where: str) -> np.ndarray:
    if not isinstance(data, bytes) or not data or len(data) % 2:
        raise RecordError(f"{where}: teacher embedding is not float16 bytes")
    return np.frombuffer(data, "<f2").astype(np.float32)


def teacher_targets(record: dict, texts: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """The stored teacher embeddings for an example whose chosen text is `texts[0]`.

    The text is matched to the record's fields (the alt-text first, then captions in
    order): strategies that pick whole fields (alt, recap, mix, uniform) return a field
    verbatim. Returns {"teacher_image": f32 [Dt], "teacher_text": f32 [Dt],
    "teacher_logit_scale": f32 scalar}. Raises RecordError naming `where` and the field
    when the record has no teacher embeddings or none for that text.
    """
    teacher = record.get("extras", {}).get(TEACHER_KEY)
    if not isinstance(teacher, dict):
        raise RecordError(f"record {where} (id {record.get('id', '?')!r}): no teacher embeddings "
                          f"(extras[{TEACHER_KEY!r}]; add them with data/add_teacher_embeddings.py)")
    text = texts[0]
    fields = [ALT_FIELD] if text == record["alt_text"] else []
    fields += [name for name, value in record["captions"].items() if value == text]
    stored = teacher.get("texts", {})
    field = next((name for name in fields if name in stored), None)
    if field is None:
        raise RecordError(f"record {where} (id {record.get('id', '?')!r}): no teacher embedding for the "
                          f"chosen text (fields {fields or 'none: not a whole field'}, stored {sorted(stored)})")
    image, text_embed = _unpack(teacher.get("image"), where), _unpack(stored[field], where)
    if image.shape != text_embed.shape:
        raise RecordError(f"record {where}: teacher image ({image.shape[0]}) and text ({text_embed.shape[0]}) "
                          "embeddings differ in size")
    return {"teacher_image": image, "teacher_text": text_embed,
            "teacher_logit_scale": np.float32(teacher.get("logit_scale", 100.0))}


def add_teacher_embeddings(teacher_workdir: str, in_paths: Sequence[str], out_dir: str,
                           fields: Sequence[str] | None = None) -> dict[str, int]:
    """Writes a copy of each shard into `out_dir` (same file names) with teacher embeddings added.

    teacher_workdir: a trained two-tower run (latest checkpoint). fields: the texts to
    encode ("alt" and caption names; None = the alt-text and every caption). A record
    that does not decode is copied unchanged (training skips and counts it as usual).
    Returns {"records", "texts", "copied_unchanged"}. Each shard is written to a
    temporary name and renamed into place, so an interrupted run leaves no partial shard;
    `out_dir/teacher.json` (the stats and the teacher) is written last, once all are done.
    """
    from bigvl.inference.run import load_run
    from bigvl.data.image_ops import center_resize, decode_image
    from bigvl.data.records import decode_example, encode_example, read_records, write_records
    from bigvl.models.two_tower import logit_scale_of

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
                image = center_resize(decode_image(record["image"]), run.encoder.image_size)
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
        text_embeds = iter(run.encoder.encode_texts(flat) if flat else [])
        for (i, record, _, texts), image_embed in zip(records, images):
            stored = {name: _pack(next(text_embeds)) for name in texts}
            record["extras"][TEACHER_KEY] = {"image": _pack(image_embed), "texts": stored,
                                             "logit_scale": logit_scale, "model": os.path.abspath(teacher_workdir)}
            out[i] = encode_example(record)
        target = os.path.join(out_dir, os.path.basename(path))
        write_records(target + ".partial", out)
        os.replace(target + ".partial", target)
        stats["records"] += len(out)
        stats["texts"] += len(flat)
        stats["copied_unchanged"] += len(out) - len(records)
        log.info("%s: %d records, %d texts in %.1f s", target, len(out), len(flat), time.time() - start)
    with open(os.path.join(out_dir, "teacher.json"), "w") as f:
        json.dump({**stats, "teacher": os.path.abspath(teacher_workdir), "logit_scale": logit_scale,
                   "shards": [os.path.basename(p) for p in in_paths]}, f, indent=1)
    return stats
