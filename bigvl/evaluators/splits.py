"""Loading a held-out split: every record of an ArrayRecord file, images centre-resized."""
from __future__ import annotations

from typing import Any

import numpy as np
from bigvl.data.image_ops import center_resize, decode_image
from bigvl.data.records import decode_example, read_records


def load_split(path: str, image_size: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Reads every record of `path`; returns (images uint8 [N,S,S,3], records without image bytes).

    Evaluation sets must be clean: a faulty record raises, naming the file and record.
    """
    raw = read_records(path)
    images, records = [], []
    for i, data in enumerate(raw):
        record = decode_example(data, where=f"{path}#{i}")
        try:
            images.append(center_resize(decode_image(record.pop("image")), image_size))
        except ValueError as e:
            raise ValueError(f"{path}#{i} (id {record['id']!r}): {e}") from None
        records.append(record)
    if not records:
        raise ValueError(f"evaluation split {path} is empty")
    return np.stack(images), records
