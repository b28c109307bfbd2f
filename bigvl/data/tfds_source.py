"""A TFDS dataset as the training source (`data.source = "tfds"`): random access, no TensorFlow.

    c.data.source = "tfds"
    c.data.tfds_name = "coco_captions"           # a prepared dataset in data.tfds_data_dir
    c.data.tfds_split = "train"                   # any TFDS split string ("train[:90%]" ...)
    c.data.tfds_image_key = "image"
    c.data.tfds_alt_key = ""                      # feature path of the alt-text ("" = none)
    c.data.tfds_captions = ["short=captions/text"]  # NAME=feature path; "/" walks nested features

The dataset must be prepared in the array_record file format (`file_format="array_record"`;
tensorflow-datasets 4.9 writes it without TensorFlow, see tests/test_tfds_source.py);
`tfds.data_source` then reads it by index. Images are read undecoded (`SkipDecoding`) and each
example becomes a bigvl record (bigvl/data/records.py), so the rest of the pipeline (crop,
caption strategies, faulty-record handling, per-host slices of each global batch) is the
ArrayRecord path's. A feature holding several texts (coco_captions' 5 per image) gives the
captions NAME (the first) and NAME_0 … NAME_k. Per-host sharding is the pipeline's: every host
opens the whole split and reads only its positions of each global batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bigvl.data.records import RecordError, encode_example


def parse_captions(items) -> list[tuple[str, str]]:
    """["NAME=feature/path", ...] → [(name, path)]; raises ValueError naming data.tfds_captions."""
    pairs = []
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep or not name or not path:
            raise ValueError(f"config key 'data.tfds_captions': {item!r} is not NAME=feature/path")
        pairs.append((name, path))
    return pairs


def _get(example: dict, path: str, where: str):
    node = example
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            have = sorted(node) if isinstance(node, dict) else type(node).__name__
            raise KeyError(f"{where}: no feature {path!r} (at {part!r}; has {have})")
        node = node[part]
    return node


def _texts(value) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def example_to_record(example: dict[str, Any], index: int, image_key: str, alt_key: str,
                      captions: list[tuple[str, str]]) -> bytes:
    """One TFDS example (image undecoded) → bigvl record bytes; KeyError/ValueError name the feature."""
    where = f"tfds example #{index}"
    image = _get(example, image_key, where)
    if not isinstance(image, bytes):
        raise ValueError(f"{where}: feature {image_key!r} is {type(image).__name__}, not encoded image bytes")
    out: dict[str, str] = {}
    for name, path in captions:
        texts = _texts(_get(example, path, where))
        if len(texts) == 1:
            out[name] = texts[0]
        elif texts:
            out[name] = texts[0]
            out.update({f"{name}_{i}": t for i, t in enumerate(texts)})
    alt = _texts(_get(example, alt_key, where))[0] if alt_key else ""
    return encode_example({"id": f"{index}", "image": image, "alt_text": alt, "captions": out})


class TfdsSource:
    """`tfds.data_source` of data.tfds_name/split as (index, record bytes) or (index, RecordError).

    Same interface as pipeline.IndexedSource. Picklable (grain worker processes reopen it).
    Raises FileNotFoundError naming the dataset when it is not prepared in data.tfds_data_dir,
    ValueError when tensorflow-datasets is not installed.
    """

    def __init__(self, data_cfg):
        try:
            import tensorflow_datasets as tfds  # optional dependency ([tfds] extra): only TFDS runs need it
        except ImportError:
            raise ValueError("config key 'data.source': 'tfds' needs tensorflow-datasets "
                             "(pip install 'bigvl[tfds]')") from None
        self.image_key, self.alt_key = data_cfg.tfds_image_key, data_cfg.tfds_alt_key
        self.captions = parse_captions(data_cfg.tfds_captions)
        name, split, data_dir = data_cfg.tfds_name, data_cfg.tfds_split, data_cfg.tfds_data_dir or None
        try:
            self.source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                           decoders={self.image_key.split("/")[0]: tfds.decode.SkipDecoding()})
        except Exception as e:  # noqa: BLE001 (tfds raises DatasetNotFoundError, AssertionError, ValueError ...)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise FileNotFoundError(f"config key 'data.tfds_name': cannot open TFDS {name!r} split {split!r} "
                                    f"in {data_dir or '~/tensorflow_datasets'} ({type(e).__name__}: {reason}); "
                                    "prepare it with file_format='array_record'") from None
        if len(self.source) == 0:
            raise FileNotFoundError(f"config key 'data.tfds_split': TFDS {name!r} split {split!r} is empty")

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, bytes | RecordError]:
        index = int(index)
        try:
            return index, example_to_record(self.source[index], index, self.image_key, self.alt_key, self.captions)
        except Exception as e:  # noqa: BLE001 (a faulty example is skipped and counted by the pipeline)
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            return index, RecordError(f"tfds example #{index}: {type(e).__name__}: {reason}")
