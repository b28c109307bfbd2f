"""The texts of converted shards, sampled for training a tokenizer (data/train_tokenizer.py).

    texts, stats = sample_texts(["out/train-00000-000.array_record", ...], max_records=200_000)

Records are drawn at random positions (seeded, without replacement) over all shards, so a
sample of a large conversion covers every shard; each drawn record gives its alt-text and
every caption field. Faulty records are skipped and counted.
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from bigvl.data.records import RecordError, decode_example


def sample_texts(paths: Sequence[str], max_records: int, seed: int = 0,
                 fields: Sequence[str] | None = None) -> tuple[list[str], dict]:
    """(texts, stats) of up to `max_records` records of the ArrayRecord `paths`.

    `fields`: caption names to keep ("alt" = the alt-text); None = all. Stats: records in the
    shards, records read, faulty records, texts per field. Texts come in record order.
    """
    import grain  # grain's ArrayRecord source gives random access over all shards
    source = grain.sources.ArrayRecordDataSource(list(paths))
    total = len(source)
    if total == 0:
        raise ValueError(f"the {len(paths)} shards hold no record")
    count = min(max_records, total)
    picks = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    texts, per_field, faulty = [], collections.Counter(), 0
    wanted = None if fields is None else set(fields)
    for index in picks.tolist():
        try:
            record = decode_example(source[index], where=f"#{index}")
        except (RecordError, ValueError):
            faulty += 1
            continue
        for name, text in [("alt", record["alt_text"]), *sorted(record["captions"].items())]:
            if (wanted is None or name in wanted) and isinstance(text, str) and text.strip():
                texts.append(text)
                per_field[name] += 1
    return texts, {"records_in_shards": total, "records_read": count, "faulty": faulty,
                   "texts": dict(per_field)}
