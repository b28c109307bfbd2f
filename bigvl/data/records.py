"""The recaptioned example: one image with its web alt-text and synthetic captions.

A record is stored as msgpack bytes (one ArrayRecord entry per example):

    {"id": str, "image": bytes (encoded JPEG/PNG), "alt_text": str,
     "captions": {name: str, ...}, "extras": {...}}

Caption names are free (``short``, ``long``, ``rewrite_0`` ...). ``extras`` holds
whatever a split needs (a class label for zero-shot sets, hard negatives ...).
"""
from __future__ import annotations

from typing import Any, Iterable

import msgpack
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter


class RecordError(ValueError):
    """A record that cannot be used; the message names the record and the fault."""


REQUIRED_FIELDS = ("id", "image", "alt_text", "captions")


def encode_example(example: dict[str, Any]) -> bytes:
    """Serialises one example dict (schema in the module docstring) to bytes."""
    missing = [k for k in REQUIRED_FIELDS if k not in example]
    if missing:
        raise RecordError(f"example {example.get('id', '?')!r} lacks fields {missing}")
    record = {
        "id": str(example["id"]),
        "image": bytes(example["image"]),
        "alt_text": example["alt_text"],
        "captions": dict(example["captions"]),
        "extras": dict(example.get("extras", {})),
    }
    return msgpack.packb(record, use_bin_type=True)


def decode_example(data: bytes, where: str = "?") -> dict[str, Any]:
    """Parses bytes written by `encode_example`; `where` names the record in errors.

    Raises RecordError on empty or undecodable bytes, a wrong schema (not a dict, a missing
    field, an empty or non-bytes image, captions not a dict) or non-UTF-8 text. Texts are
    checked where a caption strategy reads them (caption_strategies.CaptionError).
    """
    if not isinstance(data, bytes) or not data:
        raise RecordError(f"record {where}: empty or not bytes ({type(data).__name__})")
    try:
        record = msgpack.unpackb(data, raw=False)
    except UnicodeDecodeError as e:
        raise RecordError(f"record {where}: text that is not UTF-8 ({e.reason} at byte {e.start})") from None
    except (ValueError, msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException) as e:
        raise RecordError(f"record {where}: not a msgpack example ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict):
        raise RecordError(f"record {where}: expected a dict, got {type(record).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise RecordError(f"record {where} (id {record.get('id', '?')!r}): missing fields {missing}")
    if not isinstance(record["image"], bytes) or not record["image"]:
        raise RecordError(f"record {where} (id {record['id']!r}): empty or non-bytes image")
    if not isinstance(record["captions"], dict):
        raise RecordError(f"record {where} (id {record['id']!r}): captions is not a dict")
    record.setdefault("extras", {})
    return record


def read_records(path: str) -> list[bytes]:
    """All records of an ArrayRecord file, in order."""
    reader = ArrayRecordReader(str(path))
    try:
        return list(reader.read_all())
    finally:
        reader.close()


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Writes an ArrayRecord file with group_size 1 (random access, one chunk per record);
    returns the number of records written."""
    writer = ArrayRecordWriter(str(path), "group_size:1")
    count = 0
    try:
        for record in records:
            writer.write(record)
            count += 1
    finally:
        writer.close()
    return count
