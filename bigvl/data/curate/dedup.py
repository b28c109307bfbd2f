"""Image de-duplication: exact (SHA-256 of the image bytes) and near (64-bit perceptual hash, Hamming ≤ d).

    exact, near = image_hashes(image_bytes)        # hex str, int (imagehash.phash, 8 × 8 DCT bits)
    keys = band_keys(near, max_distance=4)         # d + 1 bands: two hashes within d bits share one
    drop = duplicates_to_drop(nodes, edges)        # one kept per cluster (connected component)

Near pairs are found without comparing all pairs: the 64 bits are cut into d + 1 bands, and two
hashes at Hamming distance ≤ d agree on at least one band (pigeonhole), so only records sharing a
band value are compared (`close_pairs`). Clusters are the connected components of the exact and
near pairs; each keeps its first record in input order (the smallest key) and drops the rest.
A cluster holding an evaluation record drops all its training records (the evaluation splits
de-duplicated against training).
"""
from __future__ import annotations

import hashlib
import io
from typing import Iterable, Sequence

import imagehash
from PIL import Image

BITS = 64


def image_hashes(image: bytes) -> tuple[str, int]:
    """(SHA-256 hex of the encoded bytes, perceptual hash as an int of 64 bits) of one encoded image.

    Raises ValueError (PIL's UnidentifiedImageError is one) when the bytes are not an image."""
    exact = hashlib.sha256(image).hexdigest()
    with Image.open(io.BytesIO(image)) as im:
        near = int(str(imagehash.phash(im)), 16)
    return exact, near


def band_keys(phash: int, max_distance: int) -> list[tuple[int, int]]:
    """(band index, band value) for the d + 1 bands of a 64-bit hash (d = max_distance < 64)."""
    bands = max_distance + 1
    bounds = [round(i * BITS / bands) for i in range(bands + 1)]
    return [(i, (phash >> lo) & ((1 << (hi - lo)) - 1)) for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two hashes."""
    return (a ^ b).bit_count()


def close_pairs(members: Sequence[tuple[tuple, int]], max_distance: int) -> list[tuple[tuple, tuple]]:
    """The pairs (key_a, key_b), key_a < key_b, of members [(key, phash)] within `max_distance` bits."""
    members = sorted(members)
    return [(a, b) for i, (a, ha) in enumerate(members) for b, hb in members[i + 1:]
            if hamming(ha, hb) <= max_distance]


def components(edges: Iterable[tuple[tuple, tuple]]) -> dict[tuple, tuple]:
    """Union–find over the edges: {key: the smallest key of its connected component} (keys in an edge only)."""
    parent: dict[tuple, tuple] = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: root(x) for x in parent}


def duplicates_to_drop(edges: Iterable[tuple[tuple, tuple]], is_eval=lambda key: False) -> set[tuple]:
    """The training keys to drop: in each cluster all but the smallest key, and every training key of a
    cluster that holds an evaluation key (`is_eval(key)`); evaluation keys are never returned."""
    roots = components(edges)
    clusters: dict[tuple, list[tuple]] = {}
    for key, r in roots.items():
        clusters.setdefault(r, []).append(key)
    drop = set()
    for members in clusters.values():
        train = sorted(k for k in members if not is_eval(k))
        drop.update(train if len(train) < len(members) else train[1:])
    return drop
