"""Benchmarks from TFDS builds in ArrayRecord format (`tfds.data_source`, no TensorFlow), as big_vision reads them.

    DATA_DIR/<name>/<version>/{dataset_info.json, features.json, <name>-<split>.array_record-*}

Prepare once with `tfds build <name> --data_dir DATA_DIR --file_format array_record` (ImageNet
needs its manual download). Images are kept encoded (`tfds.decode.SkipDecoding`) and decoded
only when encoded by the model; labels and captions are read once up front.
`tensorflow-datasets` is an optional extra (`pip install bigvl[tfds]`), imported here only.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bigvl.evaluators.suites.tasks import Classification, Retrieval, SuiteFilesMissing, check_labels

LAYOUT = ("DATA_DIR/<name>/<version>/ prepared in ArrayRecord format "
          "(tfds build <name> --data_dir DATA_DIR --file_format array_record)")


class TfdsImages:
    """The encoded images of a TFDS data source: read(i) → bytes of source[i][key]."""

    def __init__(self, source, key: str = "image"):
        self.source, self.key = source, key

    def __len__(self) -> int:
        return len(self.source)

    def read(self, i: int) -> Any:
        return self.source[i][self.key]


def data_source(name: str, split: str, data_dir: str):
    """tfds.data_source(name, split) from `data_dir` with images left encoded; one-line errors when not there."""
    try:
        import tensorflow_datasets as tfds  # optional extra: only TFDS suites need it
    except ImportError:
        raise SuiteFilesMissing(f"TFDS suites need tensorflow-datasets: pip install 'bigvl[tfds]' "
                                f"(then {LAYOUT})") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError / ValueError / ... for unknown names and bad dirs
        raise SuiteFilesMissing(f"TFDS dataset {name!r} not found in {data_dir} ({type(e).__name__}); "
                                f"expected layout: {LAYOUT}") from None
    if not builder.is_prepared():
        raise SuiteFilesMissing(f"{builder.data_dir} not found; expected layout: {LAYOUT}")
    if split not in builder.info.splits:
        raise ValueError(f"TFDS {name} in {builder.data_dir} has no split {split!r} "
                         f"(it has {', '.join(builder.info.splits)})")
    decoders = {"image": tfds.decode.SkipDecoding()}
    try:
        return builder.as_data_source(split=split, decoders=decoders)
    except NotImplementedError:
        raise ValueError(f"{builder.data_dir} is not in ArrayRecord format; rebuild it with "
                         f"--file_format array_record") from None


def _field(record: dict, path: str) -> Any:
    for part in path.split("/"):
        record = record[part]
    return record


def load_classification(name: str, split: str, data_dir: str, classnames: list[str], templates: list[str],
                        label_key: str = "label", subset: Sequence[int] | None = None) -> Classification:
    """A TFDS classification split. subset: the classes kept (e.g. ImageNet-A's 200 of the 1,000); labels
    are remapped to positions in `subset`, and `classnames` are those of the full label space."""
    source = data_source(name, split, data_dir)
    labels = [int(_field(source[i], label_key)) for i in range(len(source))]
    if subset is not None:
        position = {c: j for j, c in enumerate(subset)}
        outside = [lab for lab in labels if lab not in position]
        if outside:
            raise ValueError(f"TFDS {name}/{split}: label {outside[0]} is not in the suite's class subset")
        labels = [position[lab] for lab in labels]
        classnames = [classnames[c] for c in subset]
    return Classification(TfdsImages(source), check_labels(labels, len(classnames), f"TFDS {name}/{split}"),
                          classnames, templates)


def load_real(split: str, data_dir: str, classnames: list[str], templates: list[str],
              name: str = "imagenet2012_real") -> Classification:
    """ImageNet-ReaL: the validation images with their reassessed label sets (`real_label`; may be empty)."""
    source = data_source(name, split, data_dir)
    sets = [sorted(int(c) for c in source[i]["real_label"]) for i in range(len(source))]
    bad = [c for s in sets for c in s if not 0 <= c < len(classnames)]
    if bad:
        raise ValueError(f"TFDS {name}/{split}: real_label {bad[0]} is outside 0..{len(classnames) - 1}")
    labels = np.array([s[0] if s else 0 for s in sets], np.int64)
    return Classification(TfdsImages(source), labels, classnames, templates, label_sets=sets)


def load_captions(name: str, split: str, data_dir: str, text_key: str = "captions/text") -> Retrieval:
    """A TFDS image-captions split (coco_captions: Karpathy test, 5,000 images × 5 captions at captions/text)."""
    source = data_source(name, split, data_dir)
    captions = []
    for i in range(len(source)):
        texts = _field(source[i], text_key)
        captions.append([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts])
    return Retrieval(TfdsImages(source), captions)
