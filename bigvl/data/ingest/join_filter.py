"""The join filter of the shard builder's Beam pipeline (bigvl/data/ingest/pipeline.py): a Bloom filter
of every (table, join value) the input images have, built by a Beam combiner, so a table part keeps only
rows some image may join (a false positive only costs a shuffled row; there are no false negatives).
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from bigvl.data.ingest.inputs import Unit


def _hashes(item: str, bits: int, k: int = 3) -> list[int]:
    data = item.encode("utf-8", "surrogatepass")
    h1, h2 = zlib.crc32(data), zlib.adler32(data) | 1
    return [(h1 + i * h2) % bits for i in range(k)]


def filter_bits(units: Sequence[Unit]) -> int:
    """Bloom filter size: ~16 bits per expected sample (10k per tar/parquet), 2^20 … 2^30 bits."""
    expected = sum(len(u.files) if u.files else 10000 for u in units)
    return int(min(2 ** 30, max(2 ** 20, 1 << (16 * expected - 1).bit_length())))


def _join_item(t: int, value: str) -> str:
    return f"{t}\t{value}"


class FilterFn:
    """CombineFn: the Bloom bits of every (table, value) the units have."""

    def __init__(self, bits: int):
        self.bits = bits

    def create_accumulator(self):
        return np.zeros(self.bits // 8, np.uint8)

    def add_input(self, acc, key):
        for h in _hashes(_join_item(*key), self.bits):
            acc[h >> 3] |= np.uint8(1 << (h & 7))
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0].copy()
        for a in accs[1:]:
            np.bitwise_or(out, a, out=out)
        return out

    def extract_output(self, acc):
        return acc


def passes(bits: np.ndarray, t: int, value: str) -> bool:
    """Whether (table t, value) may be among the filter's items (no false negatives)."""
    n = len(bits) * 8
    return all(bits[h >> 3] & (1 << (h & 7)) for h in _hashes(_join_item(t, value), n))
