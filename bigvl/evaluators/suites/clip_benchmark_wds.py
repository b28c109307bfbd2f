"""CLIP_benchmark's webdataset layout (the `clip-benchmark/wds_*` repositories), read without webdataset.

    ROOT/classnames.txt                              one class name per line (classification)
    ROOT/zeroshot_classification_templates.txt       one template per line, {c} = the class name
    ROOT/{split}/nshards.txt                         the number of shards
    ROOT/{split}/{i}.tar                             sNNNNNNN.{webp,png,jpg,jpeg} + .cls (label) or .txt (captions, one a line)

Tars are indexed once (member offsets), then images are read by offset when encoded.
A sample without an image, or without its .cls / .txt, is skipped and counted in the log.
"""
from __future__ import annotations

import logging
import os

from bigvl.evaluators.suites.images import TarMemberImages, index_tar
from bigvl.evaluators.suites.tasks import Classification, Retrieval, check_labels, require

log = logging.getLogger(__name__)
LAYOUT = ("ROOT/{split}/nshards.txt + ROOT/{split}/0..N-1.tar (sNNNNNNN.webp|png|jpg + .cls or .txt), "
          "ROOT/classnames.txt, ROOT/zeroshot_classification_templates.txt (CLIP_benchmark wds)")
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")


def shard_paths(root: str, split: str) -> list[str]:
    """ROOT/{split}/0.tar .. (nshards-1).tar, each checked to exist."""
    nshards_file = require(os.path.join(root, split, "nshards.txt"), LAYOUT)
    with open(nshards_file) as f:
        text = f.read().strip()
    if not text.isdigit():
        raise ValueError(f"{nshards_file}: expected a number of shards, got {text[:40]!r}")
    return [require(os.path.join(root, split, f"{i}.tar"), LAYOUT) for i in range(int(text))]


def read_samples(root: str, split: str) -> tuple[list[tuple[str, int, int]], list[bytes], str]:
    """(image members [(tar, offset, size)], label-or-caption bytes per sample, "cls" or "txt")."""
    members, payloads, kinds, skipped = [], [], set(), 0
    for path in shard_paths(root, split):
        samples: dict[str, dict] = {}
        for name, info in index_tar(path):
            base = os.path.basename(name)
            stem, _, ext = base.partition(".")
            key = name[:len(name) - len(base)] + stem
            samples.setdefault(key, {})[ext.lower()] = info
        with open(path, "rb") as f:
            for key, parts in samples.items():
                image = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
                kind = "cls" if "cls" in parts else "txt" if "txt" in parts else None
                if image is None or kind is None:
                    skipped += 1
                    continue
                kinds.add(kind)
                members.append((path, image.offset_data, image.size))
                f.seek(parts[kind].offset_data)
                payloads.append(f.read(parts[kind].size))
    if skipped:
        log.warning("%s/%s: skipped %d samples without an image or a .cls/.txt", root, split, skipped)
    if not members:
        raise ValueError(f"{root}/{split}: no samples with an image and a .cls or .txt member; expected {LAYOUT}")
    if len(kinds) > 1:
        raise ValueError(f"{root}/{split}: mixes .cls and .txt samples; a split is classification or retrieval")
    return members, payloads, kinds.pop()


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load(root: str, split: str = "test", classnames: list[str] | None = None,
         templates: list[str] | None = None) -> Classification | Retrieval:
    """The split as a Classification (.cls samples) or Retrieval (.txt samples: one caption a line).

    classnames / templates: override the dataset's classnames.txt / templates file (None = read them).
    """
    members, payloads, kind = read_samples(root, split)
    images = TarMemberImages(members)
    if kind == "txt":
        captions = [[c.strip() for c in p.decode("utf-8").splitlines() if c.strip()] for p in payloads]
        return Retrieval(images, captions)
    if classnames is None:
        classnames = read_lines(require(os.path.join(root, "classnames.txt"), LAYOUT))
    if templates is None:
        templates = read_lines(require(os.path.join(root, "zeroshot_classification_templates.txt"), LAYOUT))
    try:
        labels = [int(p.decode("utf-8").strip()) for p in payloads]
    except ValueError:
        raise ValueError(f"{root}/{split}: a .cls member is not an integer label") from None
    return Classification(images, check_labels(labels, len(classnames), f"{root}/{split}"), classnames, templates)
