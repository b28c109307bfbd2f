"""The grain input pipeline: ArrayRecord shards → examples → batches for one host.

    readable shards (a shard that does not open is reported and left out)
      → all records → shuffle per epoch → repeat
      → decode + crop + caption choice + tokenize (rng seeded by the global position)
      → a faulty record's slot takes the next good example of the same slot
        (positions p + k·B), marked skipped_records = 1 (logged, counted)
      → this host's slice of each global batch → batch → prefetch

The stream is defined globally: global batch s holds positions [s·B, (s+1)·B) of the
shuffled stream and host h reads only its b = B / hosts positions of it (lazily: grain's
MapDataset is random access, so nothing else is decoded). `host_local_to_global` then
joins the host batches in host order, so 1 or N hosts train on the same global batches
with the same texts. Same seed → same order and texts; the iterator state (a position)
is saved in checkpoints with `grain.checkpoint`.

Faulty records (unreadable bytes, wrong schema, corrupt or empty image, missing, empty
or non-UTF-8 text) never stop a run. A fault is a property of a global position, and
its replacement is a pure function of that position, so 1 or N hosts still see the
same global batches, every batch keeps B examples, and a restored iterator replays
the same replacements. The count travels inside the batch (`skipped_records`, int32
[b]: 1 where the slot's own record was faulty), so it also works when grain worker
processes do the decoding; the trainer sums it into the `data_skipped` metric.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import logging
import os
from typing import Any, Sequence

import grain
import numpy as np
from absl import flags as absl_flags
from etils import epath

from bigvl.data.caption_strategies import Alt, CaptionError, Recap, make_caption_strategy, score_fallback
from bigvl.data.hard_negatives import WordSwapNegatives
from bigvl.data.hard_negatives import enabled as negatives_enabled
from bigvl.data.image_ops import decode_image, random_resized_crop
from bigvl.data.length_prefix import MIXED_LENGTHS, MixedLengths, with_length_prefix
from bigvl.data.local_views import local_views, local_views_of
from bigvl.data.locca import locca_targets
from bigvl.data.mixture import RealisedProportions, Tag, source_data_config, source_seed, source_specs
from bigvl.data.naflex_buckets import naflex_stream
from bigvl.data.records import RecordError, decode_example
from bigvl.data.teacher import teacher_targets
from bigvl.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)


# Keys whose files may be URLs (gs://): ArrayRecord shards, which array_record (≥ 0.8.6) opens in a bucket
# itself (riegeli's GcsReader); every other file (tokenizer, eval splits) is read locally.
URL_KEYS = ("data.train_paths", "data.sources")


def _glob_url(pattern: str) -> list[str]:
    """`gs://bucket/dir/*.array_record` → the matching object URLs (etils.epath over gcsfs)."""
    parts = pattern.split("/")
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    if fixed == len(parts):
        return [pattern] if epath.Path(pattern).exists() else []
    base = "/".join(parts[:fixed])
    return [str(p) for p in epath.Path(base).glob("/".join(parts[fixed:]))]


def resolve_paths(patterns: Sequence[str], what: str = "data.train_paths") -> list[str]:
    """Expands files and globs, sorted; raises FileNotFoundError naming what is missing.

    A `gs://` pattern is listed in its bucket for `URL_KEYS` (the training shards); for any
    other key it is a ValueError naming the key and the local mount to use instead.
    """
    paths = []
    for pattern in patterns:
        if "://" in pattern and not what.startswith(URL_KEYS):
            raise ValueError(f"{what}: {pattern!r} is a URL; only the training shards (data.train_paths) are "
                             "read from a bucket directly: give a local path, e.g. under the bucket's gcsfuse "
                             "mount (tpu_scripts mount gs://BUCKET at /gcs/BUCKET)")
        pattern = os.path.expanduser(pattern)
        matches = sorted(_glob_url(pattern) if "://" in pattern else glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{what}: no file matches {pattern!r}")
        paths.extend(matches)
    return paths


class NoReadableShardError(FileNotFoundError):
    """None of the training shards opens (raised by `scan_shards`; the CLI prints it as one line)."""


class ExampleProcessor:
    """(index, record bytes) → {image uint8 [S,S,3], tokens int32 [T,L], index} or None if faulty.

    A faulty record (any error while reading, parsing, decoding or choosing its text) is
    logged with its index and becomes None; `ReplaceFaulty` fills its slot and counts it.
    Picklable (the tokenizer loads lazily), so it also runs in grain worker processes.
    """

    def __init__(self, data_cfg, image_size: int, context_length: int, tokenizer_path: str,
                 target_field: str = "", target_length: int = 0, with_teacher: bool = False,
                 text_cfg=None, keep_aspect: bool = False, locca=None, local_views=None):
        """text_cfg: config.model.text, whose pad_id and normalize the tokenizer follows
        (`Tokenizer.for_model`); None: the tokenizer file's own. keep_aspect (NaFlex): the
        decoded image uint8 [H,W,3] as it is, no crop (patched per step by `naflex_stream`). locca: a
        `bigvl.data.locca.LoccaTargets` (SigLIP 2's LocCa decoder: "locca_inputs" / "locca_labels" int32 [Ld]).
        local_views: (count, size, (min, max) area) of SigLIP 2's local crops ("local_views" uint8 [M,s,s,3],
        bigvl/data/local_views.py), or None."""
        self.locca = locca
        self.local_views = local_views
        self.keep_aspect = keep_aspect
        self.strategy = make_caption_strategy(data_cfg, count_tokens=Tokenizer(tokenizer_path).count_tokens
                                              if data_cfg.caption_strategy == "partial" else None)
        self.image_size = image_size
        self.context_length = context_length
        # Captioners: the decoder target, captions[target_field] (or the alt-text) as
        # "target_tokens" int32 [target_length]; "" = none.
        self.target = ((Alt() if target_field == "alt" else MixedLengths() if target_field == MIXED_LENGTHS
                        else Recap(field=target_field)) if target_field else None)
        self.target_length = target_length
        self.target_length_prefix = bool(getattr(data_cfg, "target_length_prefix", False))  # "N words: caption"
        # Distillation: the stored teacher embeddings of the image and the chosen text
        # (bigvl/data/teacher.py), as teacher_image / teacher_text f32 [Dt], teacher_logit_scale.
        self.with_teacher = with_teacher
        self.min_crop_scale = data_cfg.min_crop_scale
        # data.min_caption_score: low-scored captions fall back to the alt-text; counted per process
        # (`score_fallbacks`, logged each time the count passes a power of two).
        self.min_caption_score = float(data_cfg.get("min_caption_score", 0.0) or 0.0)
        self.score_fallbacks = 0
        self.tokenizer_path = tokenizer_path
        self.text_cfg = None if text_cfg is None else {k: text_cfg.get(k) for k in ("pad_id", "normalize")}
        self._tokenizer = None
        # NegCLIP: an edited copy of the (first) text as "negative_tokens" int32 [L] and
        # "negative_valid" int32 (0 when the text had no word to edit within the context: the
        # loss masks it).
        self.negatives = (WordSwapNegatives.from_groups(data_cfg.negative_word_groups, data_cfg.negative_edits)
                          if negatives_enabled(data_cfg) else None)

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            text = self.text_cfg or {}
            self._tokenizer = Tokenizer(self.tokenizer_path, text.get("pad_id"), text.get("normalize") or "")
        return self._tokenizer

    def __getstate__(self):
        return {**self.__dict__, "_tokenizer": None}

    def _target_texts(self, record: dict, rng: np.random.Generator) -> list[str]:
        """The captioner's target text (a list of one), with its length prefix under data.target_length_prefix."""
        texts = self.target(record["alt_text"], record["captions"], rng)
        return [with_length_prefix(t) for t in texts] if self.target_length_prefix else texts

    def __call__(self, item: tuple[int, bytes | Exception], rng: np.random.Generator) -> dict[str, Any] | None:
        index, data = item
        try:
            if isinstance(data, Exception):  # the source could not read it
                raise data
            record = decode_example(data, where=f"#{index}")
            texts = self.strategy(record["alt_text"], record["captions"], rng)
            if self.min_caption_score > 0:
                texts, replaced = score_fallback(texts, record, self.min_caption_score)
                before, self.score_fallbacks = self.score_fallbacks, self.score_fallbacks + replaced
                if self.score_fallbacks.bit_length() > before.bit_length():
                    log.info("data.min_caption_score: %d texts fell back to the alt-text", self.score_fallbacks)
            crop = []  # the crop window, for LocCa's boxes
            decoded = decode_image(record["image"])
            image = (np.asarray(decoded, np.uint8) if self.keep_aspect else
                     random_resized_crop(decoded, self.image_size, self.min_crop_scale, rng, box_out=crop))
            tokens = self.tokenizer.encode(texts, self.context_length)
            extra = {} if self.target is None else {"target_tokens": self.tokenizer.encode(
                self._target_texts(record, rng), self.target_length)[0]}
            if self.locca is not None:
                extra.update(self.locca(record, texts[0], crop[0] if crop else (0.0, 0.0, 1.0, 1.0),
                                        self.tokenizer, rng))
            if self.local_views is not None:
                extra["local_views"] = local_views(decoded, *self.local_views, rng)
            if self.with_teacher:
                extra.update(teacher_targets(record, texts, where=f"#{index}"))
            if self.negatives is not None:
                negative = self.negatives(texts[0], rng)
                extra["negative_tokens"] = (tokens[0] if negative is None
                                            else self.tokenizer.encode([negative], self.context_length)[0])
                # no edit, or one past the context (cut off): the "negative" is the text itself
                extra["negative_valid"] = np.int32(not np.array_equal(extra["negative_tokens"], tokens[0]))
        except (RecordError, CaptionError, ValueError, TypeError, KeyError, AttributeError) as e:
            # ValueError covers undecodable images and non-UTF-8 text; TypeError, KeyError and
            # AttributeError a record whose fields have the wrong types.
            log.warning("skipping record #%d: %s", index, str(e).splitlines()[0] if str(e) else type(e).__name__)
            return None
        return {"image": image, "tokens": tokens, "index": np.int64(index), **extra}


@dataclasses.dataclass(frozen=True)
class Shards:
    """The readable shards of a list of ArrayRecord files, and what was left out.

    paths: readable files in the given order; sizes: their record counts;
    unreadable: (path, one-line reason) for each file that does not open.
    """
    paths: list[str]
    sizes: list[int]
    unreadable: list[tuple[str, str]]

    @property
    def num_records(self) -> int:
        return sum(self.sizes)


def _open_shard(path: str) -> int:
    return len(grain.sources.ArrayRecordDataSource([path]))


def scan_shards(paths: Sequence[str], what: str = "data.train_paths") -> Shards:
    """Opens every shard (its index sits in the footer); warns about and leaves out those that fail.

    A truncated or zero-byte ArrayRecord file makes grain's ArrayRecordDataSource raise at
    construction ("Failed to read RiegeliPostscript", "should be at least 64KB"), which
    would stop the run before step 1; here such a file is named in a warning and skipped.
    Raises NoReadableShardError (a FileNotFoundError) when no shard is readable. Records inside a readable shard
    that fail to read (a corrupt chunk) are handled per record by `IndexedSource`.
    """
    paths = list(paths)
    with concurrent.futures.ThreadPoolExecutor(min(16, max(1, len(paths)))) as pool:
        futures = [pool.submit(_open_shard, path) for path in paths]
    good, sizes, bad = [], [], []
    for path, future in zip(paths, futures):
        try:
            sizes.append(future.result())
            good.append(path)
        except Exception as e:  # noqa: BLE001 (riegeli/array_record raise RuntimeError, OSError ...)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            bad.append((path, f"{type(e).__name__}: {reason}"))
            log.warning("%s: leaving out unreadable shard %s (%s: %s)", what, path, type(e).__name__, reason)
    if not good:
        raise NoReadableShardError(f"{what}: none of the {len(paths)} shards is readable; first: "
                                f"{bad[0][0]} ({bad[0][1]})")
    return Shards(good, sizes, bad)


class IndexedSource:
    """The records of `shards` as (global index, bytes), or (index, RecordError) when a read fails.

    A corrupt chunk inside a shard whose index is intact raises on read (riegeli: "chunk
    header hash mismatch"); that record becomes an error naming the file and position,
    which the processor skips and counts like any faulty record.
    """

    def __init__(self, shards: Shards):
        self.shards = shards
        self.source = grain.sources.ArrayRecordDataSource(shards.paths)
        self.starts = np.cumsum([0] + list(shards.sizes))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[int, bytes | RecordError]:
        index = int(index)
        try:
            return index, self.source[index]
        except Exception as e:  # noqa: BLE001
            shard = int(np.searchsorted(self.starts, index, side="right")) - 1
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            return index, RecordError(f"record #{index} ({self.shards.paths[shard]} position "
                                      f"{index - self.starts[shard]}) unreadable: {type(e).__name__}: {reason}")


class ReplaceFaulty(grain.MapDataset):
    """Position p's example, or, if its record is faulty (None), the first good one at p + k·stride.

    With stride = the global batch B, the replacement sits in the same slot of a later
    global batch, so it is read by the same host and, within an epoch, never duplicates an
    example of the same batch. It is that later example itself (same record, same crop, same
    text): each faulty record makes one example appear twice in its epoch (`data_skipped` counts
    them). Adds "skipped_records": int32 1 where position p's own record was faulty,
    else 0 (failed replacement tries are not counted here: each is counted at its own
    position). Raises RuntimeError after `max_tries` faulty records in a row: the data
    is broken, not noisy.
    """

    def __init__(self, parent: grain.MapDataset, stride: int, max_tries: int = 64):
        super().__init__(parent)
        self.stride, self.max_tries = stride, max_tries

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        example = self._parent[index]
        if example is not None:
            return {**example, "skipped_records": np.int32(0)}
        for k in range(1, self.max_tries + 1):
            example = self._parent[index + k * self.stride]
            if example is not None:
                return {**example, "skipped_records": np.int32(1)}
        raise RuntimeError(f"{self.max_tries + 1} faulty records in a row at stream positions {index}, "
                           f"{index} + k·{self.stride}: the training data looks broken (see the warnings)")


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


def make_train_dataset(config, process_index: int = 0, process_count: int = 1,
                       shards: Shards | None = None) -> grain.IterDataset:
    """The training stream for this host: batches of b = `batch_size // process_count`.

    Batches: {"image": uint8 [b,S,S,3], "tokens": int32 [b,T,L], "index": int64 [b] (record
    ids), "skipped_records": int32 [b]}, plus "target_tokens" int32 [b,Ld] (captioners) and
    "teacher_image", "teacher_text" f32 [b,Dt], "teacher_logit_scale" f32 [b] (distillation),
    "negative_tokens" int32 [b,L] and "negative_valid" int32 [b] (data.negative_word_groups), "locca_inputs"
    and "locca_labels" int32 [b,Ld] (model.locca.depth > 0, bigvl/data/locca.py), "local_views" uint8
    [b,M,s,s,3] (loss.self_distill.weight > 0, bigvl/data/local_views.py).
    `shards`: a `scan_shards` result to reuse (else scanned here); data.source "tfds" reads
    a TFDS dataset instead (bigvl/data/tfds_source.py); data.sources mixes several sources by weight
    (bigvl/data/mixture.py; `shards` is then not used). data.naflex.lengths: "image" is replaced by
    "image_patches" uint8 [b_L,L,p·p·3] and "image_spatial_shapes" int32 [b_L,2], b_L and L set by the
    step (bigvl/data/naflex_buckets.py).
    """
    if config.data.source == "tfds":
        from bigvl.data.tfds_source import TfdsSource  # tensorflow-datasets: only TFDS runs need it
        source = TfdsSource(config.data)
    elif not config.data.get("sources"):
        if shards is None:
            shards = scan_shards(resolve_paths(config.data.train_paths))
        source = IndexedSource(shards)
    needs_target = config.model.kind != "two_tower" and config.data.target_field  # captioners

    def processor(data_cfg) -> ExampleProcessor:
        return ExampleProcessor(data_cfg, config.model.image.image_size,
                                config.model.text.context_length, config.data.tokenizer,
                                config.data.target_field if needs_target else "",
                                config.model.decoder.context_length,
                                with_teacher=config.loss.distill_weight > 0, text_cfg=config.model.text,
                                keep_aspect=bool(config.data.naflex.lengths),
                                locca=locca_targets(config.model),
                                local_views=local_views_of(config.loss))
    local_batch = config.batch_size // process_count
    specs = source_specs(config.data) if config.data.source != "tfds" else []
    if specs:  # data.sources: each read, shuffled and repeated on its own, then mixed by weight (data/mixture.py)
        parts, offset = [], 0
        for i, spec in enumerate(specs):
            part = scan_shards(resolve_paths(spec.paths, f"data.sources[{i}].paths"), f"data.sources[{i}].paths")
            parts.append(grain.MapDataset.source(IndexedSource(part)).seed(source_seed(config.seed, i)).shuffle()
                         .repeat().random_map(processor(source_data_config(config.data, spec))).map(Tag(i, offset)))
            offset += part.num_records
        ds = grain.MapDataset.mix(parts, [spec.weight for spec in specs])
    else:
        ds = (grain.MapDataset.source(source)
              .seed(config.seed).shuffle().repeat()
              .random_map(processor(config.data)))
    ds = ReplaceFaulty(ds, stride=config.batch_size)
    if config.data.naflex.lengths:  # NaFlex: one element per step, its length and batch from the step
        ds = naflex_stream(ds, config, process_index, process_count).to_iter_dataset(
            grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    else:
        ds = HostShard(ds, config.batch_size, process_index, process_count)
        ds = (ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=64))
              .batch(local_batch, drop_remainder=True))
    if config.data.num_workers > 0:
        if not absl_flags.FLAGS.is_parsed():  # grain's workers read absl flags; argparse never parses them
            absl_flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers))
    if specs:  # counted and logged in this process, after the workers
        ds = ds.map(RealisedProportions(specs))
    return ds
