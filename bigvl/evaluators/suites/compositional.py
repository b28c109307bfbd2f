"""Compositionality suites: SugarCrepe and ARO (VG-Relation, VG-Attribution) as true/false caption pairs.

    SugarCrepe: ROOT/{add_att,add_obj,replace_att,replace_obj,replace_rel,swap_att,swap_obj}.json,
                each {idx: {"filename", "caption", "negative_caption"}}, images in IMAGE_ROOT (COCO val2017)
    ARO:        ROOT/visual_genome_relation.json / visual_genome_attribution.json, lists of
                {"image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption",
                 "relation_name" | "attributes"}, images in IMAGE_ROOT (Visual Genome), cropped to the box
"""
from __future__ import annotations

import json
import os

from bigvl.evaluators.suites.images import CroppedImages, FileImages
from bigvl.evaluators.suites.tasks import Pairs, require

SUGARCREPE_CATEGORIES = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
SUGARCREPE = "ROOT/<category>.json ({idx: {filename, caption, negative_caption}}) + IMAGE_ROOT/<filename> (SugarCrepe)"
ARO = ("ROOT/visual_genome_{relation,attribution}.json ([{image_path, bbox_x, bbox_y, bbox_w, bbox_h, "
       "true_caption, false_caption}]) + IMAGE_ROOT/<image_path> (ARO)")
ARO_FILES = {"relation": "visual_genome_relation.json", "attribution": "visual_genome_attribution.json"}


def _load_json(path: str, layout: str):
    with open(require(path, layout), encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})") from None


def load_sugarcrepe(root: str, image_root: str, categories=SUGARCREPE_CATEGORIES) -> Pairs:
    """Every pair of every category (kind = the category)."""
    paths, pos, neg, kinds = [], [], [], []
    for category in categories:
        path = os.path.join(root, f"{category}.json")
        for idx, entry in _load_json(path, SUGARCREPE).items():
            try:
                paths.append(os.path.join(image_root, entry["filename"]))
                pos.append(entry["caption"])
                neg.append(entry["negative_caption"])
            except (KeyError, TypeError):
                raise ValueError(f"{path}: entry {idx!r} lacks filename, caption or negative_caption") from None
            kinds.append(category)
    require(paths[0], SUGARCREPE)
    return Pairs(FileImages(paths), pos, neg, kinds)


def load_aro(root: str, image_root: str, which: str) -> Pairs:
    """VG-Relation (`which`="relation") or VG-Attribution ("attribution"); images cropped to their boxes."""
    path = os.path.join(root, ARO_FILES[which])
    paths, boxes, pos, neg, kinds = [], [], [], [], []
    for i, entry in enumerate(_load_json(path, ARO)):
        try:
            paths.append(os.path.join(image_root, entry["image_path"]))
            boxes.append((entry["bbox_x"], entry["bbox_y"], entry["bbox_w"], entry["bbox_h"]))
            pos.append(entry["true_caption"])
            neg.append(entry["false_caption"])
        except (KeyError, TypeError):
            raise ValueError(f"{path}: entry {i} lacks image_path, bbox_x/y/w/h, true_caption or false_caption") from None
        kind = entry.get("relation_name") if which == "relation" else None
        kinds.append(str(kind) if kind else which)
    if not paths:
        raise ValueError(f"{path}: no entries")
    require(paths[0], ARO)
    return Pairs(CroppedImages(FileImages(paths), boxes), pos, neg, kinds)
