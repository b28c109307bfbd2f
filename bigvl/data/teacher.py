"""Stored teacher embeddings (MobileCLIP's reinforced data): their format in a record, and reading them.

A reinforced record carries, in ``extras["teacher"]``, a trained teacher's embeddings of
its image and of each of its texts, so a student distils from the teacher without running
it (`loss.distill_weight`, `bigvl.losses.contrastive.distillation_loss`):

    {"image": bytes float16 [Dt], "texts": {"alt": bytes, "<caption name>": bytes, ...},
     "logit_scale": float, "model": str (the teacher's workdir)}

The image embedding is of the centre-resized image (MobileCLIP stores one per stored
augmentation; a random crop of the student sees a slightly different view). Texts are
encoded at the teacher's context length (longer ones truncated, as the teacher reads them).

    python data/add_teacher_embeddings.py --teacher RUN_WORKDIR --in 'world/train-*' --out DIR

writes them (bigvl/inference/teacher_embeddings.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bigvl.data.records import RecordError

TEACHER_KEY = "teacher"
ALT_FIELD = "alt"  # the alt-text's name among the teacher's texts


def pack_embedding(vector: np.ndarray) -> bytes:
    return np.asarray(vector, "<f2").tobytes()


def unpack_embedding(data: Any, where: str) -> np.ndarray:
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
    image, text_embed = unpack_embedding(teacher.get("image"), where), unpack_embedding(stored[field], where)
    if image.shape != text_embed.shape:
        raise RecordError(f"record {where}: teacher image ({image.shape[0]}) and text ({text_embed.shape[0]}) "
                          "embeddings differ in size")
    return {"teacher_image": image, "teacher_text": text_embed,
            "teacher_logit_scale": np.float32(teacher.get("logit_scale", 100.0))}
