"""Karpathy's split files for COCO and Flickr30k retrieval (`dataset_coco.json`, `dataset_flickr30k.json`).

    {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "test",
                 "sentences": [{"raw": "A man with a red helmet ..."}, ...]}, ...]}

Images are at IMAGE_ROOT/filepath/filename (COCO) or IMAGE_ROOT/filename (Flickr30k, no
filepath). The test split: 5,000 images × 5 captions (COCO), 1,000 × 5 (Flickr30k).
"""
from __future__ import annotations

import json
import os

from bigvl.evaluators.suites.images import FileImages
from bigvl.evaluators.suites.tasks import Retrieval, require

LAYOUT = ("ROOT/dataset_coco.json or ROOT/dataset_flickr30k.json (Karpathy splits) with the images under "
          "ROOT/<filepath>/<filename> (COCO: ROOT/val2014/...) or ROOT/<filename> / ROOT/flickr30k-images/<filename>")


def load(json_path: str, image_root: str, split: str = "test") -> Retrieval:
    """The images of `split` and their raw captions."""
    with open(require(json_path, LAYOUT), encoding="utf-8") as f:
        try:
            entries = json.load(f)["images"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{json_path}: not a Karpathy split file (expected {{'images': [...]}})") from None
    paths, captions = [], []
    for i, entry in enumerate(entries):
        if entry.get("split") != split:
            continue
        try:
            path = os.path.join(image_root, entry.get("filepath", ""), entry["filename"])
            texts = [s["raw"].strip() for s in entry["sentences"]]
        except (KeyError, TypeError, AttributeError):
            raise ValueError(f"{json_path}: image entry {i} lacks filename or sentences[].raw") from None
        paths.append(path)
        captions.append(texts)
    if not paths:
        raise ValueError(f"{json_path}: no images with split {split!r}")
    require(paths[0], LAYOUT)
    return Retrieval(FileImages(paths), captions)
