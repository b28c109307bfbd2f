"""NaFlex length buckets: which sequence length each step trains at, and its batch.

Every step trains at one patch budget L from `data.naflex.lengths`; its global batch is
B_L = tokens_per_step // L rounded *down* to a multiple of `multiple` (the data-parallel
devices × `optim.grad_accum_steps`, so every bucket splits over the mesh, the hosts and
the micro-batches), never below `multiple`. Tokens per step are therefore constant up to
that rounding (`BucketSchedule.tokens` says the exact count per bucket).

The schedule is a pure function of (seed, batch number n): the buckets are visited in
cycles of K = len(lengths) steps, each cycle in its own seeded order, so every length gets
the same number of steps and batch n starts at the closed-form stream position
`offset(n)`. Nothing but n decides a batch, which keeps resume exact: the grain iterator
state (a batch number) and the step restore everything.

`StepBatches` turns the example stream (one example per stream position, faults already
replaced and counted by `pipeline.ReplaceFaulty`) into one element per batch: host h's
slice [offset(n) + h·b, offset(n) + (h+1)·b) of batch n (b = B_L / hosts), each image
patched to L by `patchify`, stacked. Batches: image_patches uint8 [b, L, p·p·3],
image_spatial_shapes int32 [b, 2], plus every other key of the examples stacked.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import grain
import jax
import numpy as np

from bigvl.data.naflex import naflex_image


@dataclasses.dataclass(frozen=True)
class BucketSchedule:
    """lengths: patch budgets L; tokens_per_step: image tokens per global step; seed: the
    order of each cycle; multiple: every global batch is a multiple of it."""
    lengths: tuple[int, ...]
    tokens_per_step: int
    seed: int = 0
    multiple: int = 1

    def __post_init__(self):
        if not self.lengths or any(int(L) <= 0 for L in self.lengths):
            raise ValueError(f"data.naflex.lengths: need positive patch budgets, got {list(self.lengths)}")
        if len(set(self.lengths)) != len(self.lengths):
            raise ValueError(f"data.naflex.lengths: repeated length in {list(self.lengths)}")
        if self.multiple < 1:
            raise ValueError(f"batch multiple must be >= 1, got {self.multiple}")
        short = [L for L in self.lengths if self.tokens_per_step // L < self.multiple]
        if short:
            raise ValueError(f"data.naflex.tokens_per_step {self.tokens_per_step}: length(s) {short} get fewer than "
                             f"{self.multiple} examples per step (the data-parallel devices x grad_accum_steps); "
                             f"raise tokens_per_step to at least {max(short) * self.multiple}")

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Global batch per bucket: (tokens_per_step // L) rounded down to a multiple of `multiple`."""
        return tuple(self.tokens_per_step // L // self.multiple * self.multiple for L in self.lengths)

    @property
    def tokens(self) -> tuple[int, ...]:
        """Image tokens (padding included) each bucket's step holds: B_L · L <= tokens_per_step."""
        return tuple(b * L for b, L in zip(self.batch_sizes, self.lengths))

    @property
    def cycle_examples(self) -> int:
        return sum(self.batch_sizes)

    def order(self, cycle: int) -> np.ndarray:
        """The bucket indices of cycle `cycle` (steps cycle·K ... cycle·K + K - 1), int [K]."""
        return np.random.default_rng([self.seed, cycle]).permutation(len(self.lengths))

    def bucket(self, n: int) -> int:
        """Index into `lengths` of batch n (0-based: training step n + 1)."""
        cycle, i = divmod(int(n), len(self.lengths))
        return int(self.order(cycle)[i])

    def length(self, n: int) -> int:
        return int(self.lengths[self.bucket(n)])

    def batch_size(self, n: int) -> int:
        return self.batch_sizes[self.bucket(n)]

    def offset(self, n: int) -> int:
        """First stream position of batch n: the examples of every earlier batch."""
        cycle, i = divmod(int(n), len(self.lengths))
        sizes = np.asarray(self.batch_sizes)
        return cycle * self.cycle_examples + int(sizes[self.order(cycle)[:i]].sum())


def patch_size_of(image_cfg) -> int:
    """model.image's patch size: `patch_size`, else the variant's "/N" (data may not import models)."""
    patch = int(image_cfg.patch_size or int(image_cfg.variant.partition("/")[2] or 0))
    if patch <= 0:
        raise ValueError(f"data.naflex: model.image has no patch size (variant {image_cfg.variant!r}, patch_size 0)")
    return patch


def schedule_from_config(config, devices: int) -> BucketSchedule | None:
    """`data.naflex` → its schedule, None when `data.naflex.lengths` is empty (square images).

    devices: the data-parallel devices (every bucket's batch is a multiple of devices ×
    optim.grad_accum_steps unless data.naflex.batch_multiple says otherwise).
    tokens_per_step 0: batch_size × (image_size / patch)², the square recipe's tokens, so a
    NaFlex run and a square run of the same config cost the same per step.
    """
    nf = config.data.naflex
    if not nf.lengths:
        return None
    tokens = int(nf.tokens_per_step)
    if tokens <= 0:
        tokens = config.batch_size * (config.model.image.image_size // patch_size_of(config.model.image)) ** 2
    multiple = int(nf.batch_multiple) or devices * int(config.optim.grad_accum_steps)
    return BucketSchedule(tuple(int(L) for L in nf.lengths), tokens, int(config.seed), multiple)


class StepBatches(grain.MapDataset):
    """Batch n of `schedule` for host `host` of `hosts`: the examples patched to its L, stacked.

    patchify(image uint8 [H, W, 3], L) → (patches uint8 [L, p·p·3], spatial_shape int32 [2]).
    """

    def __init__(self, parent: grain.MapDataset, schedule: BucketSchedule,
                 patchify: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                 host: int = 0, hosts: int = 1):
        super().__init__(parent)
        if schedule.multiple % hosts and any(b % hosts for b in schedule.batch_sizes):
            raise ValueError(f"NaFlex batches {schedule.batch_sizes} do not split over {hosts} hosts")
        self.schedule, self.patchify, self.host, self.hosts = schedule, patchify, host, hosts

    def __len__(self) -> int:
        return len(self._parent) // self.schedule.cycle_examples * len(self.schedule.lengths)

    def positions(self, n: int) -> range:
        """The stream positions host `host` reads for batch n."""
        b = self.schedule.batch_size(n) // self.hosts
        start = self.schedule.offset(n) + self.host * b
        return range(start, start + b)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        length = self.schedule.length(index)
        examples = [self._parent[p] for p in self.positions(index)]
        return stack_patched(examples, length, self.patchify)


def stack_patched(examples: Sequence[dict], length: int, patchify) -> dict[str, np.ndarray]:
    """Examples with "image" uint8 [H_i, W_i, 3] (any sizes) → one batch at patch budget `length`."""
    patched = [patchify(np.asarray(ex["image"]), length) for ex in examples]
    batch = {key: np.stack([ex[key] for ex in examples]) for key in examples[0] if key != "image"}
    batch["image_patches"] = np.stack([p for p, _ in patched]).astype(np.uint8)
    batch["image_spatial_shapes"] = np.stack([s for _, s in patched]).astype(np.int32)
    return batch


def patchify(image: np.ndarray, length: int, patch_size: int, rule: str = "closest_aspect") -> tuple[np.ndarray, np.ndarray]:
    """One image at patch budget `length`: `naflex_image`'s aspect-keeping patching (uint8 [L, p·p·3], int32 [2])."""
    return naflex_image(image, patch_size, length, rule)


def naflex_stream(examples: grain.MapDataset, config, host: int, hosts: int) -> StepBatches:
    """The pipeline's example stream → host `host`'s NaFlex batches, one per step (see StepBatches)."""
    schedule = schedule_from_config(config, jax.device_count())
    return StepBatches(examples, schedule, functools.partial(patchify, patch_size=patch_size_of(config.model.image),
                                                         rule=config.model.image.get("naflex_grid", "closest_aspect")),
                       host, hosts)
