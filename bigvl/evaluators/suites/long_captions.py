"""Long-caption retrieval sets: Urban1k, DOCCI and DCI (one long caption per image).

    Urban1k:  ROOT/image/X.jpg + ROOT/caption/X.txt                       (1,000 pairs)
    DOCCI:    ROOT/docci_descriptions.jsonlines ({"split", "image_file", "description"} per line)
              + ROOT/images/<image_file>                                  (test split: 5,000)
    DCI:      ROOT/annotations/*.json ({"image", "short_caption", "extra_caption", ...})
              + ROOT/photos/<image>; the caption is short_caption + " " + extra_caption
"""
from __future__ import annotations

import glob
import json
import os

from bigvl.evaluators.suites.images import FileImages
from bigvl.evaluators.suites.tasks import Retrieval, require

URBAN1K = "ROOT/image/X.jpg + ROOT/caption/X.txt (Urban1k)"
DOCCI = "ROOT/docci_descriptions.jsonlines + ROOT/images/<image_file> (DOCCI)"
DCI = "ROOT/annotations/*.json + ROOT/photos/<image> (DCI / sDCI)"


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def load_urban1k(root: str) -> Retrieval:
    """Every ROOT/image/X.* with its ROOT/caption/X.txt, sorted by X."""
    image_dir = require(os.path.join(root, "image"), URBAN1K)
    caption_dir = require(os.path.join(root, "caption"), URBAN1K)
    paths, captions = [], []
    for name in sorted(os.listdir(image_dir)):
        stem = os.path.splitext(name)[0]
        caption = require(os.path.join(caption_dir, stem + ".txt"), URBAN1K)
        paths.append(os.path.join(image_dir, name))
        captions.append([_read_text(caption)])
    if not paths:
        raise ValueError(f"{image_dir}: no images; expected {URBAN1K}")
    return Retrieval(FileImages(paths), captions)


def load_docci(root: str, split: str = "test") -> Retrieval:
    """The `split` lines of docci_descriptions.jsonlines."""
    path = require(os.path.join(root, "docci_descriptions.jsonlines"), DOCCI)
    paths, captions = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if entry["split"] != split:
                    continue
                paths.append(os.path.join(root, "images", entry["image_file"]))
                captions.append([entry["description"].strip()])
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}:{i + 1}: expected a JSON object with split, image_file, description") from None
    if not paths:
        raise ValueError(f"{path}: no lines with split {split!r}")
    require(paths[0], DOCCI)
    return Retrieval(FileImages(paths), captions)


def load_dci(root: str) -> Retrieval:
    """Every ROOT/annotations/*.json (sorted): its photo and short_caption + extra_caption."""
    files = sorted(glob.glob(os.path.join(require(os.path.join(root, "annotations"), DCI), "*.json")))
    if not files:
        raise ValueError(f"{root}/annotations: no .json files; expected {DCI}")
    paths, captions = [], []
    for file in files:
        with open(file, encoding="utf-8") as f:
            try:
                entry = json.load(f)
                text = f"{entry.get('short_caption', '')} {entry.get('extra_caption', '')}".strip()
                paths.append(os.path.join(root, "photos", entry["image"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{file}: expected a DCI annotation with image, short_caption, extra_caption") from None
        if not text:
            raise ValueError(f"{file}: empty short_caption and extra_caption")
        captions.append([text])
    require(paths[0], DCI)
    return Retrieval(FileImages(paths), captions)
