"""Loading a held-out split: every record of an ArrayRecord file, images centre-resized.

`SplitCache` holds the splits of one evaluation: each path is read once and its images
encoded once, however many evaluators use it (the world's retrieval split serves
retrieval, pointing and captioning).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from bigvl.data.image_ops import center_resize, decode_image
from bigvl.data.records import decode_example, read_records


def load_split(path: str, image_size: int, prepare=None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Reads every record of `path`; returns (images uint8 [N,S,S,3], records without image bytes).
    `prepare` (an Encoder's, NaFlex models): PIL image → the model's input, instead of the centre resize.

    Evaluation sets must be clean: a faulty record raises, naming the file and record.
    """
    raw = read_records(path)
    images, records = [], []
    for i, data in enumerate(raw):
        record = decode_example(data, where=f"{path}#{i}")
        try:
            image = decode_image(record.pop("image"))
            images.append(prepare(image) if prepare else center_resize(image, image_size))
        except ValueError as e:
            raise ValueError(f"{path}#{i} (id {record['id']!r}): {e}") from None
        records.append(record)
    if not records:
        raise ValueError(f"evaluation split {path} is empty")
    return np.stack(images), records


class SplitCache:
    """The splits of one evaluation with one encoder, each read and image-encoded at most once.

    Keyed by path. `with_patches`: paths whose patch embeddings will be wanted as well
    (pointing); with a model that has them, their images go through the image tower once
    for both the pooled and the patch embeddings. Build a new cache per evaluation (the
    embeddings belong to the encoder's params); evaluators share the returned arrays and
    records: never mutate them.
    """

    def __init__(self, encoder, with_patches: Iterable[str] = ()):
        self.encoder = encoder
        self.with_patches = set(with_patches)
        self._splits: dict[str, tuple[np.ndarray, list[dict[str, Any]]]] = {}
        self._image_embeds: dict[str, np.ndarray] = {}
        self._patch_embeds: dict[str, np.ndarray] = {}

    def load(self, path: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """(images uint8 [N,S,S,3], records) of `path` (`load_split` at the encoder's image size), read once."""
        if path not in self._splits:
            naflex = getattr(self.encoder, "max_patches", 0)  # NaFlex: the image at its aspect ratio, L patches
            self._splits[path] = load_split(path, self.encoder.image_size, self.encoder.prepare if naflex else None)
        return self._splits[path]

    def image_embeds(self, path: str) -> np.ndarray:
        """The encoder's L2-normalised image embeddings float32 [N,E] of the split's images, computed once."""
        if path not in self._image_embeds:
            if path in self.with_patches and getattr(self.encoder, "has_patches", False):
                self._encode_with_patches(path)
            else:
                self._image_embeds[path] = self.encoder.encode_images(self.load(path)[0])
        return self._image_embeds[path]

    def patch_embeds(self, path: str) -> np.ndarray:
        """The encoder's L2-normalised patch embeddings float32 [N,P,E] of the split's images, computed once."""
        if path not in self._patch_embeds:
            self._encode_with_patches(path)
        return self._patch_embeds[path]

    def _encode_with_patches(self, path: str) -> None:
        pooled, patches = self.encoder.encode_images_with_patches(self.load(path)[0])
        self._image_embeds.setdefault(path, pooled)
        self._patch_embeds[path] = patches


def split_cache(encoder, splits: SplitCache | None) -> SplitCache:
    """`splits` (checked to belong to `encoder`), or a fresh SplitCache for a standalone evaluator call."""
    if splits is None:
        return SplitCache(encoder)
    if splits.encoder is not encoder:
        raise ValueError("the SplitCache passed to an evaluator was built for another encoder")
    return splits
