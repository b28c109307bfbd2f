"""The grain input pipeline: ArrayRecord shards → examples → batches for one host.

    all records → shuffle per epoch → repeat
      → decode + crop + caption choice + tokenize (rng seeded by the global position)
      → this host's slice of each global batch → drop faulty examples (logged, counted)
      → batch → prefetch

The stream is defined globally: global batch s holds positions [s·B, (s+1)·B) of the
shuffled stream and host h reads only its b = B / hosts positions of it (lazily: grain's
MapDataset is random access, so nothing else is decoded). `host_local_to_global` then
joins the host batches in host order, so 1 or N hosts train on the same global batches
with the same texts. Same seed → same order and texts; the iterator state (a position)
is saved in checkpoints with `grain.checkpoint`.
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Any, Sequence

import grain
import numpy as np

from bigvl.data.caption_strategies import CaptionError, make_caption_strategy
from bigvl.data.image_ops import decode_image, random_resized_crop
from bigvl.data.records import RecordError, decode_example
from bigvl.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def resolve_paths(patterns: Sequence[str], what: str = "data.train_paths") -> list[str]:
    """Expands files and globs, sorted; raises FileNotFoundError naming what is missing."""
    paths = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{what}: no file matches {pattern!r}")
        paths.extend(matches)
    return paths


class ExampleProcessor:
    """Record bytes → {image uint8 [S,S,3], tokens int32 [T,L]} or None for a faulty record.

    Picklable (the tokenizer loads lazily), so it also runs in grain worker processes.
    `num_skipped` counts faults seen in this process.
    """

    def __init__(self, data_cfg, image_size: int, context_length: int, tokenizer_path: str):
        self.strategy = make_caption_strategy(data_cfg, count_tokens=Tokenizer(tokenizer_path).count_tokens
                                              if data_cfg.caption_strategy == "partial" else None)
        self.image_size = image_size
        self.context_length = context_length
        self.min_crop_scale = data_cfg.min_crop_scale
        self.tokenizer_path = tokenizer_path
        self._tokenizer = None
        self.num_skipped = 0

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.tokenizer_path)
        return self._tokenizer

    def __getstate__(self):
        return {**self.__dict__, "_tokenizer": None}

    def __call__(self, item: tuple[int, bytes], rng: np.random.Generator) -> dict[str, Any] | None:
        index, data = item
        try:
            record = decode_example(data, where=f"#{index}")
            texts = self.strategy(record["alt_text"], record["captions"], rng)
            image = random_resized_crop(decode_image(record["image"]), self.image_size,
                                        self.min_crop_scale, rng)
        except (RecordError, CaptionError, ValueError) as e:
            self.num_skipped += 1
            log.warning("skipping record #%d: %s", index, e)
            return None
        return {
            "image": image,
            "tokens": self.tokenizer.encode(texts, self.context_length),
            "index": np.int64(index),
        }


class IndexedSource:
    """Wraps a random-access source so each item carries its global record index."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, bytes]:
        return int(index), self.source[index]


class HostShard(grain.MapDataset):
    """Host `host`'s b = B / hosts positions of every global batch of B (lazy, random access)."""

    def __init__(self, parent: grain.MapDataset, global_batch: int, host: int, hosts: int):
        super().__init__(parent)
        self.global_batch, self.local_batch, self.host = global_batch, global_batch // hosts, host

    def __len__(self) -> int:
        return len(self._parent) // self.global_batch * self.local_batch

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        step, offset = divmod(index, self.local_batch)
        return self._parent[step * self.global_batch + self.host * self.local_batch + offset]


def make_train_dataset(config, process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """The training stream for this host: batches of `batch_size // process_count`.

    Batches: {"image": uint8 [b,S,S,3], "tokens": int32 [b,T,L], "index": int64 [b]}.
    """
    paths = resolve_paths(config.data.train_paths)
    source = IndexedSource(grain.sources.ArrayRecordDataSource(paths))
    processor = ExampleProcessor(config.data, config.model.image.image_size,
                                 config.model.text.context_length, config.data.tokenizer)
    local_batch = config.batch_size // process_count
    ds = (grain.MapDataset.source(source)
          .seed(config.seed).shuffle().repeat()
          .random_map(processor))
    ds = HostShard(ds, config.batch_size, process_index, process_count)
    ds = (ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=64))
          .filter(lambda example: example is not None)
          .batch(local_batch, drop_remainder=True))
    if config.data.num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers))
    return ds
