"""Faulty training data on purpose: broken records and shards, to check that runs survive them.

Used by `python -m experiments.reliability` and the tests. Each record fault kind turns one
good example (a dict as `records.encode_example` takes) into the bytes of a faulty
record; shard faults damage a copy of an ArrayRecord file.
"""
from __future__ import annotations

import os
import shutil
from typing import Callable, Sequence

import msgpack
from array_record.python.array_record_module import ArrayRecordReader

from bigvl.data.records import decode_example, encode_example, write_records


def _with(example: dict, **changes) -> dict:
    return {**example, "captions": dict(example["captions"]), **changes}


def _non_utf8(example: dict) -> bytes:
    """The short caption's bytes are not UTF-8 (msgpack str type, invalid content)."""
    marker = "QQQQQQQQ"
    data = encode_example(_with(example, captions={**example["captions"], "short": marker}))
    return data.replace(marker.encode(), b"\xff\xfe\xfd" + marker[3:].encode())


RECORD_FAULTS: dict[str, Callable[[dict], bytes]] = {
    "corrupt_jpeg": lambda e: encode_example(_with(e, image=b"\x00" * 16 + bytes(e["image"])[16:])),
    "truncated_jpeg": lambda e: encode_example(_with(e, image=bytes(e["image"])[:len(e["image"]) // 2])),
    "zero_byte_image": lambda e: encode_example(_with(e, image=b"")),
    "missing_caption": lambda e: encode_example(_with(
        e, captions={k: v for k, v in e["captions"].items() if k != "short"})),
    "empty_caption": lambda e: encode_example(_with(e, captions={**e["captions"], "short": "  "})),
    "non_utf8_text": _non_utf8,
    "wrong_schema": lambda e: msgpack.packb({"id": e["id"], "img": bytes(e["image"]), "text": e["alt_text"]},
                                            use_bin_type=True),
    "not_a_record": lambda e: b"\x93\x01\x02garbage-bytes",
}
"""Record fault kinds. Under caption strategy `recap` (field `short`) each one is faulty."""


def write_faulty_shard(good: Sequence[bytes], path: str, kinds: Sequence[str] = tuple(RECORD_FAULTS)
                       ) -> dict[str, int]:
    """Writes `good` records plus one faulty record per kind, spread evenly; {kind: record index}.

    Each faulty record is made from a copy of a good one (so only the fault differs).
    """
    records = list(good)
    total = len(records) + len(kinds)
    where = {kind: (k + 1) * total // (len(kinds) + 1) for k, kind in enumerate(kinds)}
    for kind, index in where.items():  # ascending: earlier inserts keep later indices valid
        template = decode_example(good[index % len(good)])
        records.insert(index, RECORD_FAULTS[kind](template))
    write_records(path, records)
    return where


def truncate_shard(src: str, dst: str, fraction: float = 0.5) -> None:
    """Copies the first `fraction` of `src`'s bytes to `dst`: its footer and index are gone."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])


def corrupt_chunk(src: str, dst: str, at: float = 0.4, length: int = 4096) -> list[int]:
    """Copies `src` to `dst` with `length` bytes zeroed at fraction `at` of the file (the footer
    and index stay intact); returns the positions of the records that no longer read."""
    shutil.copyfile(src, dst)
    size = os.path.getsize(dst)
    start = int(size * at)
    with open(dst, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * min(length, size - start))
    reader = ArrayRecordReader(dst)
    bad = []
    try:
        for position in range(reader.num_records()):
            try:
                reader.read([position])
            except Exception:  # noqa: BLE001 (riegeli raises RuntimeError)
                bad.append(position)
    finally:
        reader.close()
    return bad
