"""Hard-negative texts made by editing a caption's words (NegCLIP, Yuksekgonul et al. 2023).

For each training text, one negative that differs from it in a single word choice: the
model must then read that word to tell them apart. Word groups are interchangeable words
of one kind (colours, shapes, relation words); an edit is either

- `replace`: one occurrence of a group word becomes another word of its group
  ("a red circle left of a blue square" → "a red star left of a blue square"), or
- `swap`: two different words of one group exchange places
  ("... a red square left of a blue circle"; NegCLIP's attribute swap).

Edits are drawn uniformly among all the edits the text allows, from the example's rng
(so the same seed and step give the same negative). A text with no group word has no
negative (`None`); the loss masks its column. Words match whole words, case-insensitively;
the rest of the text is kept as it is.

    negatives = WordSwapNegatives.from_groups([["red", "blue"], ["circle", "square", "star"]])
    negatives("a red circle", rng)  # e.g. "a blue circle" or "a red star"
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

EDITS = ("replace", "swap")
_WORD = re.compile(r"[A-Za-z]+")


class NegativeWordsError(ValueError):
    """The configured word groups are unusable (`data.negative_word_groups`)."""


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def enabled(data_cfg) -> bool:
    """Whether a run trains with hard negatives (`data.negative_word_groups` non-empty)."""
    return bool(data_cfg.get("negative_word_groups", []))


@dataclasses.dataclass(frozen=True)
class WordSwapNegatives:
    """One edited text per input text (see the module docstring). `groups`: lowercase words,
    each word in one group, each group ≥ 2 words; `edits`: a non-empty subset of EDITS."""
    groups: tuple[tuple[str, ...], ...]
    edits: tuple[str, ...] = EDITS
    group_of: dict = dataclasses.field(init=False, repr=False, compare=False)  # word → group index

    def __post_init__(self):
        object.__setattr__(self, "group_of", {w: i for i, group in enumerate(self.groups) for w in group})

    @classmethod
    def from_groups(cls, groups: Sequence[Sequence[str]], edits: Sequence[str] = EDITS) -> "WordSwapNegatives":
        """Checks and normalises the groups; NegativeWordsError names the offending word or group."""
        clean, seen = [], {}
        for i, group in enumerate(groups):
            words = tuple(str(w).strip().lower() for w in group)
            if len(set(words)) < 2:
                raise NegativeWordsError(f"data.negative_word_groups[{i}] needs at least 2 different words, got {list(group)}")
            for w in words:
                if not _WORD.fullmatch(w):
                    raise NegativeWordsError(f"data.negative_word_groups[{i}]: {w!r} is not one word of letters")
                if w in seen and seen[w] != i:
                    raise NegativeWordsError(f"data.negative_word_groups: {w!r} is in groups {seen[w]} and {i}")
                seen[w] = i
            clean.append(tuple(dict.fromkeys(words)))
        bad = [e for e in edits if e not in EDITS]
        if bad or not edits:
            raise NegativeWordsError(f"data.negative_edits {list(edits)} must be a non-empty subset of {EDITS}")
        return cls(groups=tuple(clean), edits=tuple(edits))

    def candidates(self, text: str) -> list[tuple[tuple[int, int, str], ...]]:
        """Every edit the text allows, each as the spans it rewrites: ((start, end, new word), ...)
        (one span for a replace, two for a swap)."""
        found = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)
                 if m.group().lower() in self.group_of]
        out = []
        if "replace" in self.edits:
            for start, end, word in found:
                out.extend(((start, end, w),) for w in self.groups[self.group_of[word]] if w != word)
        if "swap" in self.edits:
            for a, (sa, ea, wa) in enumerate(found):
                for sb, eb, wb in found[a + 1:]:
                    if wa != wb and self.group_of[wa] == self.group_of[wb]:
                        out.append(((sa, ea, wb), (sb, eb, wa)))
        return out

    def __call__(self, text: str, rng: np.random.Generator) -> str | None:
        """The edited text, or None when the text has no group word to edit."""
        options = self.candidates(text)
        if not options:
            return None
        for start, end, word in sorted(options[int(rng.integers(len(options)))], reverse=True):
            text = text[:start] + _match_case(word, text[start:end]) + text[end:]
        return text
