"""An ImageFolder tree: ROOT/<class dir>/<image>, labels in the sorted order of the class directories
(numeric order when every directory name is a number, as ImageNetV2's 0..999 are).

    ROOT/n01440764/ILSVRC2012_val_00000293.JPEG ...     (torchvision's ImageFolder layout)
    ROOT/classnames.txt (optional)                      one name per class dir, in sorted dir order

Class names: the suite's list (e.g. OpenAI's 1,000 ImageNet names, whose order is the sorted
WordNet ids), else ROOT/classnames.txt, else the directory names with "_" as spaces.
"""
from __future__ import annotations

import os

from bigvl.evaluators.suites.images import FileImages
from bigvl.evaluators.suites.tasks import Classification, SuiteFilesMissing, check_labels, require

LAYOUT = ("ROOT/<class dir>/<image>.{jpg,jpeg,png,webp,bmp} (ImageFolder), optional ROOT/classnames.txt "
          "(and, for the `folder` suite, ROOT/templates.txt)")
DEFAULT_TEMPLATES = ["a photo of a {c}."]
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def templates_of(root: str) -> list[str]:
    """ROOT/templates.txt (one prompt template a line, {c} or {} = the class name), else
    DEFAULT_TEMPLATES: the prompts of the `folder` suite, any user's ImageFolder."""
    path = os.path.join(root, "templates.txt")
    if not os.path.exists(path):
        return list(DEFAULT_TEMPLATES)
    with open(path, encoding="utf-8") as f:
        found = [line.rstrip("\n") for line in f if line.strip()]
    if not found or not all("{c}" in t or "{}" in t for t in found):
        raise ValueError(f"{path}: every line must be a template holding {{c}} or {{}} (the class name)")
    return found


def load(root: str, templates: list[str], classnames: list[str] | None = None,
         names_by_dir: dict[str, str] | None = None) -> Classification:
    """Every image under ROOT's class directories (sorted) as a Classification.

    classnames: one per directory in sorted order; names_by_dir: {directory: name} instead
    (ImageNet's WordNet-id directories, also when only a subset is present, as in ImageNet-A/R).
    """
    require(root, LAYOUT)
    dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if dirs and all(d.isdigit() for d in dirs):  # ImageNetV2's folders are the class indices 0..999
        dirs = sorted(dirs, key=int)
    if not dirs:
        raise SuiteFilesMissing(f"{root}: no class directories; expected layout: {LAYOUT}")
    if names_by_dir is not None:
        unknown = [d for d in dirs if d not in names_by_dir]
        if unknown:
            raise ValueError(f"{root}: class directory {unknown[0]!r} is not a known class id (expected {LAYOUT})")
        classnames = [names_by_dir[d] for d in dirs]
    elif classnames is None:
        names_file = os.path.join(root, "classnames.txt")
        if os.path.exists(names_file):
            with open(names_file, encoding="utf-8") as f:
                classnames = [line.strip() for line in f if line.strip()]
        else:
            classnames = [d.replace("_", " ") for d in dirs]
    if len(classnames) != len(dirs):
        raise ValueError(f"{root}: {len(dirs)} class directories but {len(classnames)} class names")
    paths, labels = [], []
    for label, d in enumerate(dirs):
        for name in sorted(os.listdir(os.path.join(root, d))):
            if name.lower().endswith(EXTENSIONS):
                paths.append(os.path.join(root, d, name))
                labels.append(label)
    if not paths:
        raise ValueError(f"{root}: no images in the class directories; expected {LAYOUT}")
    return Classification(FileImages(paths), check_labels(labels, len(classnames), root), classnames, templates)
