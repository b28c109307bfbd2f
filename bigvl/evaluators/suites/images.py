"""Images of a benchmark, read lazily: a suite knows where each image is, never holds them all.

An image sequence has `len(seq)` and `seq.read(i)` → encoded bytes (JPEG/PNG/WebP), a PIL
image or a uint8 array; `load_batch(seq, indices, size)` decodes just those, centre-cropped
and resized as every evaluation split is (`bigvl.data.image_ops.center_resize`), made RGB
by `bigvl.data.image_ops.rgb_image` (PIL's `convert("RGB")`, as CLIP_benchmark does). A
50,000-image validation set is read chunk by chunk by the encoding loop
(`bigvl.evaluators.suites.protocols`).
"""
from __future__ import annotations

import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from bigvl.data.image_ops import center_resize, decode_image, rgb_image


class FileImages:
    """Images stored as files: read(i) → the bytes of paths[i]."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()


class TarMemberImages:
    """Images stored as tar members: members[i] = (tar path, data offset, size); one open handle per tar and thread."""

    def __init__(self, members: Sequence[tuple[str, int, int]]):
        self.members = list(members)
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.members)

    def read(self, i: int) -> bytes:
        path, offset, size = self.members[i]
        handles = self._local.__dict__.setdefault("handles", {})
        if path not in handles:
            handles[path] = open(path, "rb")
        f = handles[path]
        f.seek(offset)
        return f.read(size)


def index_tar(path: str) -> list[tuple[str, tarfile.TarInfo]]:
    """(member name, TarInfo) of each regular file of `path`, in tar order; ValueError names a bad tar."""
    try:
        with tarfile.open(path) as tar:
            return [(m.name, m) for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError) as e:
        raise ValueError(f"{path}: unreadable tar shard ({e})") from None


class CroppedImages:
    """base[i] cropped to boxes[i] = (x, y, w, h) in pixels (ARO's bounding boxes)."""

    def __init__(self, base, boxes: Sequence[Sequence[float]]):
        self.base, self.boxes = base, [tuple(float(v) for v in b) for b in boxes]

    def __len__(self) -> int:
        return len(self.base)

    def read(self, i: int) -> Image.Image:
        x, y, w, h = self.boxes[i]
        image = to_pil(self.base.read(i), where=i)
        return image.crop((int(x), int(y), int(x + w), int(y + h)))


class Subset:
    """base restricted to `indices` (e.g. the images of one split)."""

    def __init__(self, base, indices: Sequence[int]):
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, i: int) -> Any:
        return self.base.read(self.indices[i])


def to_pil(item: Any, where: Any = "?") -> Image.Image:
    """What an image sequence's `read` gives (encoded bytes, a PIL image or a uint8 array) → an RGB
    PIL image (`rgb_image`); ValueError names `where` if undecodable."""
    if isinstance(item, (Image.Image, np.ndarray)):
        return rgb_image(item, where)
    return decode_image(item, where)


_POOL = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1))


def load_batch(images, indices: Sequence[int], size: int, prepare: Callable | None = None) -> np.ndarray:
    """uint8 [len(indices), size, size, 3]: images.read(i) decoded (in threads) and squared by `prepare`
    (PIL image → uint8 [size, size, 3], an Encoder's `prepare`; None: centre-cropped and resized)."""
    prepare = prepare or (lambda image: center_resize(image, size))

    def one(i):
        return prepare(to_pil(images.read(i), where=_describe(images, i)))
    return np.stack(list(_POOL.map(one, indices))) if len(indices) else np.zeros((0, size, size, 3), np.uint8)


def _describe(images, i: int) -> str:
    if isinstance(images, FileImages):
        return images.paths[i]
    if isinstance(images, TarMemberImages):
        return f"{images.members[i][0]} (member at byte {images.members[i][1]})"
    return f"#{i}"
