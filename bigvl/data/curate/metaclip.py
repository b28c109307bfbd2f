"""MetaCLIP balancing (Xu et al., "Demystifying CLIP Data", Algorithm 1): substring matching + per-entry caps.

    matcher = EntryMatcher(["red circle", "blue square", ...])   # the metadata list, one entry a line
    entries = matcher(alt_text)                    # sorted indices of the entries found in the text
    probs = keep_probabilities(counts, t=20_000)   # min(1, t / count(entry)), float64 [M]
    keep = balanced_keep(entries, probs, seed, record_id)

A text is matched against every entry as MetaCLIP's `substr_matching` does: the entry padded with
spaces (" entry ") is a substring of the text padded with spaces, with , . ; : ? ! ` wrapped in
spaces and tabs/newlines made spaces, so entries match whole words; overlapping matches are found by
one Aho–Corasick automaton (`ahocorasick_rs`). MetaCLIP matches case-sensitively (its list holds
proper nouns); bigvl case-folds text and entries unless `case_sensitive`, since web alt-texts vary in
case ("RED CIRCLE"). A text
that matches no entry is dropped (the algorithm's first step). Each matched entry draws the pair
with probability min(1, t / count(entry)); the pair is kept if any of its entries draws it. The
uniform draw of (record, entry) is a hash of (seed, record id, entry index), so a record's
fate depends neither on the order nor on the sharding of the input.
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import ahocorasick_rs
import numpy as np


def read_metadata(path: str) -> list[str]:
    """The entries of a metadata file (one a line; blank lines and lines starting with '#' left out).

    Raises ValueError naming the file when it holds no entry or an entry twice (case-folded)."""
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        entries = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"metadata list {path}: no entries (one entry a line)")
    folded = [e.casefold() for e in entries]
    if len(set(folded)) != len(folded):
        twice = sorted({e for e in folded if folded.count(e) > 1})
        raise ValueError(f"metadata list {path}: entries listed twice (case-folded): {twice[:5]}")
    return entries


PUNCTUATION = (",", ".", ";", ":", "?", "!", "`")  # wrapped in spaces before matching (MetaCLIP's `spacing`)


def spaced(text: str) -> str:
    """MetaCLIP's `spacing`: ' text ' with the PUNCTUATION wrapped in spaces and tabs / newlines as spaces."""
    text = f" {text} "
    for mark in PUNCTUATION:
        text = text.replace(mark, f" {mark} ")
    for char in "\t\n\r":
        text = text.replace(char, " ")
    return text


class EntryMatcher:
    """text → sorted indices of the metadata entries that occur in it as whole words (module docstring)."""

    def __init__(self, entries: Sequence[str], case_sensitive: bool = False):
        self.entries, self.case_sensitive = list(entries), case_sensitive
        self.automaton = ahocorasick_rs.AhoCorasick([f" {self._case(e)} " for e in self.entries],
                                                    matchkind=ahocorasick_rs.MatchKind.Standard)

    def _case(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()

    def __call__(self, text: str) -> list[int]:
        if not text:
            return []
        found = self.automaton.find_matches_as_indexes(spaced(self._case(text)), overlapping=True)
        return sorted({index for index, _, _ in found})

    def __getstate__(self):  # the automaton does not pickle: Beam workers rebuild it from the entries
        return {"entries": self.entries, "case_sensitive": self.case_sensitive}

    def __setstate__(self, state):
        self.__init__(state["entries"], state["case_sensitive"])


def keep_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """counts int [M] (pairs matching each entry) → min(1, t / count) float64 [M] (1 for unmatched entries)."""
    counts = np.asarray(counts, np.float64)
    return np.minimum(1.0, t / np.maximum(counts, 1.0))


def t_for_tail_share(counts: np.ndarray, tail_share: float) -> int:
    """counts int [M] → the t whose tail (entries with count < t) holds `tail_share` of all matches.

    MetaCLIP's own transfer of t between pools (`p_to_t` in metaclip/curation/curate.py): sort the
    counts, take the count at which the cumulative share of the smallest is nearest `tail_share`.
    At 400M scale t = 20k leaves 5.35B of 5.67B matches on the ~16k head entries (count >= t), a tail
    share of ~5.6 % (TAIL_SHARE_400M)."""
    counts = np.sort(np.asarray(counts, np.float64))
    if counts.sum() <= 0:
        raise ValueError("t_for_tail_share: no entry has a match")
    share = np.cumsum(counts) / counts.sum()
    return int(counts[int(np.abs(share - tail_share).argmin())])


TAIL_SHARE_400M = 1 - 5.35 / 5.67  # MetaCLIP 400M: the share of matches on entries below t = 20k


def uniform_draw(seed: int, record_id: str, entry: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, record id, entry index): 53 bits of a BLAKE2b hash."""
    digest = hashlib.blake2b(f"{seed}\x00{record_id}\x00{entry}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def balanced_keep(entries: Sequence[int], probs: np.ndarray, seed: int, record_id: str) -> bool:
    """Whether a pair whose text matched `entries` is kept: any entry e with draw(seed, id, e) < probs[e]."""
    return any(uniform_draw(seed, record_id, e) < probs[e] for e in entries)


def kept_probability(entries: Sequence[int], probs: np.ndarray) -> float:
    """The probability that `balanced_keep` keeps the pair: 1 − Π (1 − p_e) over its entries (0 with none)."""
    return float(1.0 - np.prod([1.0 - probs[e] for e in entries])) if len(entries) else 0.0
