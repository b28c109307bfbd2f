"""LocCa's decoder targets on the host: captioning, referring expressions and grounded captions.

    targets = LoccaTargets.from_config(config.model)
    targets(record, caption, crop, tokenizer, rng) → {"locca_inputs": int32 [Ld], "locca_labels": int32 [Ld]}

One task per example, drawn with `model.locca.task_weights` (caption, refexp, grounded); an
example without a usable region (none, or none left in the crop) is a caption example. The
sequences and the reserved ids are `bigvl.models.locca`'s (its module docstring).

Regions, in the record's `extras`:
- `regions` = [{"text", "x0", "y0", "x1", "y1"}] (a box) or [{"text", "x", "y", "radius"}] (a disc: the
  pointing game's field; its box is the disc's bounding square), fractions of the image side,
  x to the right, y down. Real data joins such a table with `build-shards` (docs/guides/siglip2.md).
- else the synthetic world's `extras.scene`: one region per object whose colour+shape is unique
  in the scene (the pointing game's rule), named by its noun phrase ("a red circle").

Boxes follow the random crop (`crop`: the crop window as fractions of the source image); a region
less than half inside the crop is dropped.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bigvl.data.scene_geometry import scene_regions

Region = tuple[str, tuple[float, float, float, float]]  # (text, box x0 y0 x1 y1)
TASKS = ("caption", "refexp", "grounded")


@dataclasses.dataclass(frozen=True)
class LoccaVocab:
    """The decoder's ids: the tokenizer's [0, text_vocab) then LocCa's reserved ids (module docstring)."""
    text_vocab: int
    num_bins: int

    @property
    def task_ids(self) -> dict[str, int]:
        return {task: self.text_vocab + i for i, task in enumerate(TASKS)}

    @property
    def mask_id(self) -> int:
        return self.text_vocab + len(TASKS)

    @property
    def coord_offset(self) -> int:
        return self.text_vocab + len(TASKS) + 1

    @property
    def size(self) -> int:
        return self.coord_offset + self.num_bins


def quantise_box(box, num_bins: int) -> np.ndarray:
    """box (x0, y0, x1, y1) fractions of the image side → int bins [4] in [0, num_bins).

    Bin k covers [k/n, (k+1)/n); a coordinate of exactly 1.0 falls in the last bin. Values
    outside [0, 1] are clipped.
    """
    v = np.clip(np.asarray(box, np.float64), 0.0, 1.0)
    return np.minimum(np.floor(v * num_bins), num_bins - 1).astype(np.int32)


def dequantise_box(bins, num_bins: int) -> np.ndarray:
    """int bins [..., 4] → float64 box [..., 4]: the bins' centres (error ≤ 1 / (2·num_bins) per coordinate)."""
    return (np.asarray(bins, np.float64) + 0.5) / num_bins


def box_iou(a, b) -> np.ndarray:
    """Boxes [..., 4] (x0, y0, x1, y1) → float64 IoU [...] (0 for empty unions)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def record_regions(record: dict) -> list[Region]:
    """The (text, box) regions of a record (module docstring); [] when it has none.

    Raises ValueError naming the record for a region without a text or a box / disc.
    """
    extras = record.get("extras") or {}
    regions = extras.get("regions")
    if regions:
        found = []
        for region in regions:
            if "text" in region and all(k in region for k in ("x0", "y0", "x1", "y1")):
                box = tuple(float(region[k]) for k in ("x0", "y0", "x1", "y1"))
            elif "text" in region and all(k in region for k in ("x", "y", "radius")):
                x, y, r = float(region["x"]), float(region["y"]), float(region["radius"])
                box = (x - r, y - r, x + r, y + r)
            else:
                raise ValueError(f"record {record.get('id')!r}: a region needs 'text' and x0/y0/x1/y1 or "
                                 f"x/y/radius, got keys {sorted(region)}")
            found.append((str(region["text"]), box))
        return found
    return scene_regions(extras.get("scene") or {})


def crop_box(box, crop) -> tuple[float, float, float, float] | None:
    """box and crop (x0, y0, x1, y1) in source fractions → the box in crop fractions, clipped to
    [0, 1]; None when less than half of the box's area lies inside the crop."""
    cx0, cy0, cx1, cy1 = crop
    w, h = cx1 - cx0, cy1 - cy0
    x0, y0, x1, y1 = (box[0] - cx0) / w, (box[1] - cy0) / h, (box[2] - cx0) / w, (box[3] - cy0) / h
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    c = (min(max(x0, 0.0), 1.0), min(max(y0, 0.0), 1.0), min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0))
    kept = max(c[2] - c[0], 0.0) * max(c[3] - c[1], 0.0)
    return c if area > 0 and kept >= 0.5 * area else None


def text_ids(tokenizer, text: str, length: int) -> list[int]:
    """The tokenizer's ids of `text` without EOS or padding, at most `length`."""
    row = tokenizer.encode([text], length + 1)[0]
    return [int(i) for i in row if i not in (tokenizer.pad_id, tokenizer.eos_id)][:length]


def sequence(prompt: list[int], target: list[int], length: int, bos_id: int, pad_id: int,
             mask_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(decoder input, labels) int32 [length] of prompt + target (`bigvl.models.locca`): input = [BOS] +
    full[:-1], labels = pad over the prompt then the target; `mask_id`: parallel prediction, the inputs at
    the target positions after the first are MASK. The target is cut to fit."""
    target = target[:max(length - len(prompt), 0)]
    full = prompt + target
    inputs = np.full(length, pad_id, np.int32)
    labels = np.full(length, pad_id, np.int32)
    inputs[:len(full)] = [bos_id] + full[:-1]
    labels[len(prompt):len(full)] = target
    if mask_id is not None:
        inputs[len(prompt) + 1:len(full)] = mask_id
    return inputs, labels


@dataclasses.dataclass(frozen=True)
class LoccaTargets:
    """(record, caption text, crop window, tokenizer, rng) → the example's LocCa input and labels."""
    vocab: LoccaVocab
    length: int
    task_weights: tuple[float, ...]
    parallel_fraction: float
    bos_id: int
    pad_id: int
    eos_id: int

    @classmethod
    def from_config(cls, model_cfg) -> "LoccaTargets":
        cfg, text = model_cfg.locca, model_cfg.text
        vocab = LoccaVocab(int(text.vocab_size), int(cfg.num_bins))
        return cls(vocab, int(cfg.context_length), tuple(float(w) for w in cfg.task_weights),
                   float(cfg.parallel_fraction), int(text.bos_id), int(text.pad_id), int(text.eos_id))

    def coords(self, box) -> list[int]:
        """box (x0, y0, x1, y1) → its 4 coordinate token ids."""
        return [self.vocab.coord_offset + int(b) for b in quantise_box(box, self.vocab.num_bins)]

    def refexp_prompt(self, tokenizer, phrase: str) -> list[int]:
        """[REF, phrase ids]: the prompt the refexp evaluator decodes a box after."""
        return [self.vocab.task_ids["refexp"]] + text_ids(tokenizer, phrase, self.length - 6)

    def __call__(self, record: dict, caption: str, crop, tokenizer, rng: np.random.Generator) -> dict:
        regions = [(text, box) for text, box in ((t, crop_box(b, crop)) for t, b in record_regions(record))
                   if box is not None]
        weights = np.asarray(self.task_weights, np.float64)
        task = TASKS[int(rng.choice(len(TASKS), p=weights / weights.sum()))]
        if task != "caption" and not regions:
            task = "caption"
        parallel = bool(rng.random() < self.parallel_fraction)
        ids = self.vocab.task_ids
        if task == "caption":
            prompt = [ids["caption"]]
            target = text_ids(tokenizer, caption, self.length) + [self.eos_id]
        else:
            text, box = regions[int(rng.integers(len(regions)))]
            if task == "refexp":
                prompt, target = self.refexp_prompt(tokenizer, text), self.coords(box)
            else:
                prompt = [ids["grounded"]] + self.coords(box)
                target = text_ids(tokenizer, text, self.length) + [self.eos_id]
        inputs, labels = sequence(prompt, target, self.length, self.bos_id, self.pad_id,
                                  self.vocab.mask_id if parallel else None)
        return {"locca_inputs": inputs, "locca_labels": labels}


def locca_targets(model_cfg) -> LoccaTargets | None:
    """The pipeline's LocCa targets for `config.model` (model.locca.depth > 0), else None."""
    locca = model_cfg.get("locca")
    return LoccaTargets.from_config(model_cfg) if locca is not None and locca.get("depth", 0) > 0 else None
