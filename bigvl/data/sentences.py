"""Splitting a long caption into sentences (for the `partial`, `multi` and `long` strategies).

    split_sentences("A red circle. It is large!  The background is grey.")
    # ['A red circle.', 'It is large!', 'The background is grey.']

A sentence ends at a run of '.', '!' or '?' (closing quotes or brackets included) that
is followed by whitespace or the end of the text, and at every line break. A period
after a common abbreviation ("e.g.", "Dr.", "vs.") does not end a sentence, and
periods inside a token ("3.5", "example.com") never do. Sentences keep their final
punctuation; whitespace inside them is collapsed to single spaces. Synthetic captions
(MLLM output) rarely need more; a rule-based library (pysbd) or a trained model (nltk
punkt) would be the upgrade for web text.
"""
from __future__ import annotations

import re
from typing import Sequence

# Lower-cased, without the final period. "etc." and "no." are left out on purpose: they
# often do end a sentence.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "approx", "fig", "cf",
})

_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)|\n")
_LAST_WORD = re.compile(r"(\S+)$")


def _after_abbreviation(text_before_period: str) -> bool:
    match = _LAST_WORD.search(text_before_period)
    return bool(match) and match.group(1).lstrip("(\"'").lower() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, stripped and whitespace-collapsed; [] for blank text."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        is_break = match.group() == "\n"
        if not is_break and match.group().startswith(".") and _after_abbreviation(text[start:match.start()]):
            continue
        _append(sentences, text[start:match.end()])
        start = match.end()
    _append(sentences, text[start:])
    return sentences


def _append(sentences: list[str], piece: str) -> None:
    """Adds the whitespace-collapsed piece unless it is punctuation only ('. .' leftovers)."""
    piece = " ".join(piece.split())
    if any(c.isalnum() for c in piece):
        sentences.append(piece)


def join_sentences(sentences: Sequence[str]) -> str:
    """Sentences back into one text, separated by single spaces."""
    return " ".join(sentences)
