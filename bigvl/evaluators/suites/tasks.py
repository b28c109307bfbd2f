"""What a suite reader returns: one of three tasks, each with lazily read images.

- `Classification`: images, labels [N] in 0..C-1, class names [C], prompt templates ({c} or {} = the name),
  optionally several correct labels per image (ImageNet-ReaL).
- `Retrieval`: images and captions[i] (one or several per image).
- `Pairs`: images with a true and a false caption each (SugarCrepe, ARO), and a kind per pair.

`SuiteFilesMissing` is the one error a reader raises when the user's files are not there:
its message names the missing file and the layout the reader expects.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np


class SuiteFilesMissing(FileNotFoundError):
    """A suite's files are not where the reader looks; str() = the path and the expected layout, one line."""


@dataclasses.dataclass
class Classification:
    images: Any  # .read(i), len()
    labels: np.ndarray  # int [N]
    classnames: list[str]
    templates: list[str]
    label_sets: list[list[int]] | None = None  # several correct classes per image (ImageNet-ReaL); then
    # `labels` is unused by the metrics and images with an empty set are left out


@dataclasses.dataclass
class Retrieval:
    images: Any
    captions: list[list[str]]  # [N][k_i]


@dataclasses.dataclass
class Pairs:
    images: Any
    positives: list[str]  # [N]
    negatives: list[str]  # [N]
    kinds: list[str]  # [N] e.g. SugarCrepe's category, ARO's relation or attribute pair
    # macro: the main `acc` is the mean over kinds of each kind's accuracy (ARO's published number),
    # counting only kinds with ≥ min_kind_count pairs that are not in excluded_kinds; the mean over
    # pairs is then `acc_micro`. Without macro, `acc` is the mean over pairs (SugarCrepe).
    macro: bool = False
    min_kind_count: int = 1
    excluded_kinds: frozenset[str] = frozenset()


def require(path: str, layout: str) -> str:
    """`path` if it exists, else SuiteFilesMissing naming it and the expected layout."""
    if not os.path.exists(path):
        raise SuiteFilesMissing(f"{path} not found; expected layout: {layout}")
    return path


def fill_template(template: str, name: str) -> str:
    """A prompt: the template with {c} (CLIP_benchmark's placeholder) or {} replaced by the class name."""
    return template.replace("{c}", name).replace("{}", name)


def check_labels(labels: Sequence[int], num_classes: int, where: str) -> np.ndarray:
    """int [N]; ValueError naming `where` for a label outside 0..num_classes-1."""
    labels = np.asarray(labels, np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise ValueError(f"{where}: label {labels[bad[0]]} of example {bad[0]} is outside 0..{num_classes - 1}")
    return labels
