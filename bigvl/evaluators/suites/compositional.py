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
       "true_caption, false_caption, relation_name | attributes}]) + IMAGE_ROOT/<image_path> (ARO)")
ARO_FILES = {"relation": "visual_genome_relation.json", "attribution": "visual_genome_attribution.json"}

# ARO's published numbers are macro-averages (Yuksekgonul et al. 2023), as the authors compute them in
# github.com/mertyg/vision-language-models-are-bows (checked at 81fdd20): VG-Relation in
# "notebooks/Replicate ARO! VG-Relation, VG-Attribution.ipynb" = the mean over relations of
# dataset_zoo/aro_datasets.py VG_Relation.evaluate_scores' per-relation accuracies (every relation with
# a sample, no minimum count) after dropping the relations of the notebook's `symmetric` list below;
# VG-Attribution = the mean over attribute pairs ("<attributes[0]>_<attributes[1]>") of
# VG_Attribution.evaluate_scores, which keeps only pairs with ≥ 25 samples. CLIP_benchmark
# (LAION-AI/CLIP_benchmark at 48de38c) has no ARO reader, only SugarCrepe and Winoground.
ARO_ATTRIBUTION_MIN_COUNT = 25
ARO_RELATIONS_LEFT_OUT = frozenset((  # 157 relation names, sorted
    "adjusting", "around", "attached to", "beside", "between", "bigger than", "biting", "boarding", "brushing",
    "by", "chewing", "cleaning", "climbing", "close to", "coming from", "coming out of", "contain", "crossing",
    "dragging", "draped over", "drinking", "drinking from", "driving", "driving down", "driving on", "eating from",
    "eating in", "enclosing", "exiting", "facing", "filled with", "floating in", "floating on", "flying",
    "flying above", "flying in", "flying over", "flying through", "full of", "going down", "going into",
    "going through", "grazing in", "growing in", "growing on", "guiding", "hanging from", "hanging in",
    "hanging off", "hanging over", "higher than", "holding onto", "hugging", "in between", "jumping off",
    "jumping on", "jumping over", "kept in", "larger than", "leading", "leaning over", "leaving", "licking",
    "longer than", "looking in", "looking into", "looking out", "looking over", "looking through", "lying next to",
    "lying on top of", "making", "mixed with", "mounted on", "moving", "near", "next to", "of", "on the back of",
    "on the edge of", "on the front of", "on the other side of", "on the side of", "opening", "painted on",
    "parked at", "parked beside", "parked by", "parked in", "parked in front of", "parked near", "parked next to",
    "perched on", "petting", "piled on", "playing", "playing in", "playing on", "playing with", "pouring",
    "reaching for", "reading", "reflected on", "riding on", "running in", "running on", "running through",
    "seen through", "sitting behind", "sitting beside", "sitting by", "sitting in front of", "sitting near",
    "sitting next to", "sitting under", "skiing down", "skiing on", "sleeping in", "sleeping on", "smiling at",
    "sniffing", "splashing", "sprinkled on", "stacked on", "standing against", "standing around", "standing behind",
    "standing beside", "standing in front of", "standing near", "standing next to", "staring at", "stuck in",
    "surrounding", "swimming in", "swinging", "talking to", "topped with", "touching", "traveling down",
    "traveling on", "tying", "typing on", "underneath", "wading in", "waiting for", "walking across", "walking by",
    "walking down", "walking next to", "walking through", "with", "working in", "working on", "worn on",
    "wrapped around", "wrapped in",
))


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
        kinds.append(_aro_kind(entry, which))
    if not paths:
        raise ValueError(f"{path}: no entries")
    require(paths[0], ARO)
    if which == "relation":
        rule = {"excluded_kinds": ARO_RELATIONS_LEFT_OUT}
    else:
        rule = {"min_kind_count": ARO_ATTRIBUTION_MIN_COUNT}
    return Pairs(CroppedImages(FileImages(paths), boxes), pos, neg, kinds, macro=True, **rule)


def _aro_kind(entry: dict, which: str) -> str:
    """The relation name, or the attribute pair joined by "_" as ARO's authors do; `which` when absent."""
    if which == "relation":
        kind = entry.get("relation_name")
        return str(kind) if kind else which
    attributes = entry.get("attributes")
    if isinstance(attributes, (list, tuple)) and len(attributes) == 2:
        return f"{attributes[0]}_{attributes[1]}"
    return which
