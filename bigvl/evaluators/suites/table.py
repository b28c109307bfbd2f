"""The suites by name: `SUITES[name]` says where its files are (under --data_dir) and how to read them.

    wds/<dataset>          CLIP_benchmark webdataset (DATA_DIR/wds_<dataset>/ or DATA_DIR itself)
    tfds/<name>            TFDS ArrayRecord builds in DATA_DIR (big_vision's evaluation sets)
    folder/<dataset>       an ImageFolder tree
    folder                 any ImageFolder tree (--data_dir is its root; ROOT/templates.txt optional)
    karpathy/{coco,flickr30k}, urban1k, docci, dci, sugar_crepe, aro/{vg_relation,vg_attribution}

A suite's root is DATA_DIR itself when DATA_DIR holds the suite's marker file (the user pointed
at the dataset), else DATA_DIR/<subdir>. An unknown name fails at once with the nearest names.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from functools import lru_cache
from typing import Callable

from bigvl.evaluators.suites import (
    clip_benchmark_wds,
    compositional,
    image_folder,
    karpathy,
    long_captions,
    tfds_suites,
)

DATA = os.path.join(os.path.dirname(__file__), "classnames")


@lru_cache(maxsize=None)
def classnames(name: str) -> tuple[str, ...]:
    """The class names shipped with bigvl: imagenet (OpenAI's 1,000), cifar10, cifar100, pets."""
    with open(os.path.join(DATA, f"{name}.txt"), encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f if line.strip())


def imagenet_subset(name: str) -> list[int]:
    """Sorted indices into the 1,000 ImageNet classes of imagenet_a / imagenet_r (their 200 WordNet ids,
    as CLIP_benchmark and the datasets' authors define them)."""
    keep = set(classnames(f"{name}_wnids"))
    return [i for i, wnid in enumerate(classnames("imagenet_wnids")) if wnid in keep]


def imagenet_names_by_wnid() -> dict[str, str]:
    """{WordNet id: OpenAI class name} of the 1,000 ImageNet classes."""
    return dict(zip(classnames("imagenet_wnids"), classnames("imagenet")))


@lru_cache(maxsize=None)
def _all_templates() -> dict:
    with open(os.path.join(DATA, "templates.json"), encoding="utf-8") as f:
        return json.load(f)


def templates(name: str) -> list[str]:
    """Prompt templates ({c} = class name): imagenet (80, clip_paper), imagenet_best (7, clip_best), cifar, pets,
    class_name_only."""
    return list(_all_templates()[name])


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    subdir: str  # under --data_dir
    marker: str  # a path inside the suite's root that says "this directory is the suite"
    load: Callable  # root -> Classification | Retrieval | Pairs


def _root(data_dir: str, suite: Suite) -> str:
    if suite.marker and os.path.exists(os.path.join(data_dir, suite.marker)):
        return data_dir
    return os.path.join(data_dir, suite.subdir) if suite.subdir else data_dir


def _wds(dataset: str) -> Suite:
    return Suite(f"wds/{dataset}", "wds_" + dataset.replace("/", "-"), "test/nshards.txt",
                 lambda root: clip_benchmark_wds.load(root, "test"))


def _folder(dataset: str, subdir: str, names: str | None, template_key: str) -> Suite:
    """ImageFolder; names "imagenet_wnid": directories named by WordNet id, named from OpenAI's list."""
    def load(root):
        if names == "imagenet_wnid":
            return image_folder.load(root, templates(template_key), names_by_dir=imagenet_names_by_wnid())
        return image_folder.load(root, templates(template_key), list(classnames(names)) if names else None)
    return Suite(f"folder/{dataset}", subdir, "", load)


def _tfds_cls(name: str, split: str, names: str, template_key: str, subset: str = "", label_key="label") -> Suite:
    return Suite(f"tfds/{name}", "", "", lambda root: tfds_suites.load_classification(
        name, split, root, list(classnames(names)), templates(template_key), label_key,
        imagenet_subset(subset) if subset else None))


def _flickr_images(root: str) -> str:
    images = os.path.join(root, "flickr30k-images")
    return images if os.path.isdir(images) else root


SUITES: dict[str, Suite] = {s.name: s for s in [
    *[_wds(d) for d in ("imagenet1k", "imagenetv2", "imagenet-a", "imagenet-r", "imagenet_sketch", "cifar10",
                        "cifar100", "vtab/pets", "mscoco_captions", "flickr30k")],
    _tfds_cls("imagenet2012", "validation", "imagenet", "imagenet"),
    _tfds_cls("imagenet_v2", "test", "imagenet", "imagenet"),
    _tfds_cls("imagenet_a", "test", "imagenet", "imagenet", "imagenet_a"),
    _tfds_cls("imagenet_r", "test", "imagenet", "imagenet", "imagenet_r"),
    Suite("tfds/imagenet2012_real", "", "", lambda root: tfds_suites.load_real(
        "validation", root, list(classnames("imagenet")), templates("imagenet"))),
    _tfds_cls("cifar10", "test", "cifar10", "cifar"),
    _tfds_cls("cifar100", "test", "cifar100", "cifar"),
    _tfds_cls("oxford_iiit_pet", "test", "pets", "pets"),
    Suite("tfds/coco_captions", "", "", lambda root: tfds_suites.load_captions("coco_captions", "test", root)),
    _folder("imagenet1k", "imagenet/val", "imagenet_wnid", "imagenet"),
    _folder("imagenet-a", "imagenet-a", "imagenet_wnid", "imagenet"),
    _folder("imagenet-r", "imagenet-r", "imagenet_wnid", "imagenet"),
    _folder("imagenetv2", "imagenetv2-matched-frequency-format-val", "imagenet", "imagenet"),
    _folder("cifar10", "cifar10/test", "cifar10", "cifar"),
    # any ImageFolder: --data_dir is its root; class names from classnames.txt or the directories
    Suite("folder", "", "", lambda root: image_folder.load(root, image_folder.templates_of(root))),
    _folder("cifar100", "cifar100/test", "cifar100", "cifar"),
    Suite("karpathy/coco", "coco", "dataset_coco.json",
          lambda root: karpathy.load(os.path.join(root, "dataset_coco.json"), root, "test")),
    Suite("karpathy/flickr30k", "flickr30k", "dataset_flickr30k.json",
          lambda root: karpathy.load(os.path.join(root, "dataset_flickr30k.json"), _flickr_images(root), "test")),
    Suite("urban1k", "Urban1k", "caption", long_captions.load_urban1k),
    Suite("docci", "docci", "docci_descriptions.jsonlines", long_captions.load_docci),
    Suite("dci", "dci", "annotations", long_captions.load_dci),
    Suite("sugar_crepe", "sugar_crepe", "swap_att.json",
          lambda root: compositional.load_sugarcrepe(root, os.path.join(root, "val2017"))),
    Suite("aro/vg_relation", "aro", "visual_genome_relation.json",
          lambda root: compositional.load_aro(root, os.path.join(root, "images"), "relation")),
    Suite("aro/vg_attribution", "aro", "visual_genome_attribution.json",
          lambda root: compositional.load_aro(root, os.path.join(root, "images"), "attribution")),
]}


def parse_suites(spec: str) -> list[str]:
    """'a,b' → ['a', 'b'], each checked against SUITES; ValueError names an unknown one and the nearest."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError("no suite named (--suite NAME[,NAME...])")
    for name in names:
        if name not in SUITES:
            near = difflib.get_close_matches(name, list(SUITES), n=3, cutoff=0.4)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise ValueError(f"unknown suite {name!r}{hint} (known: {', '.join(SUITES)})")
    return names


def unknown_suite(spec: str) -> str:
    """"" when every name of the comma-separated `spec` is a suite (or spec is ""), else parse_suites' message."""
    try:
        return "" if not spec.strip() else (parse_suites(spec) and "")
    except ValueError as e:
        return str(e)


def load_suite(name: str, data_dir: str):
    """The task of suite `name` read from `data_dir` (SuiteFilesMissing names the missing file and layout)."""
    suite = SUITES[parse_suites(name)[0]]
    return suite.load(_root(data_dir, suite))
