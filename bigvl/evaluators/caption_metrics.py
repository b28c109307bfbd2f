"""Captioning metrics of the COCO caption evaluation: CIDEr-D and BLEU-1..4.

Written to give the same numbers as pycocoevalcap 1.2 (`Cider`, `Bleu(4)`), quirks
included, on the same pre-tokenised inputs (tests/fixtures/caption_metrics.json holds its
scores). Inputs are `{key: [text, ...]}` dicts of whitespace-tokenised, lowercase text:
one candidate per key, one or more references. `tokenize` is the light tokeniser our
evaluator uses (pycocoevalcap's PTBTokenizer needs Java).

CIDEr-D (Vedantam et al. 2015, as coded in coco-caption): n-grams n = 1..4 weighted by
tf-idf, where document frequencies count the images whose references hold the n-gram;
per n the cosine of candidate and reference vectors with the candidate's counts
clipped to the reference's, times exp(-(Δlen)²/(2σ²)) with σ = 6 (coco-caption's
"length" counts *bigrams*, a quirk we keep); mean over n and references, times 10.

BLEU (corpus level, Papineni et al. 2002 as in coco-caption): clipped n-gram precision
summed over the corpus with 1e-15 / 1e-9 smoothing, the reference length closest to each
candidate, brevity penalty on the corpus ratio.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> str:
    """Lowercase, keep runs of letters/digits, join by single spaces ("A red, circle." → "a red circle")."""
    return " ".join(_TOKEN.findall(text.lower()))


def _ngrams(text: str, n: int) -> Counter:
    words = text.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _check(candidates: Mapping[str, Sequence[str]], references: Mapping[str, Sequence[str]]) -> list:
    if set(candidates) != set(references):
        raise ValueError("candidates and references must have the same keys")
    for key in candidates:
        if len(candidates[key]) != 1:
            raise ValueError(f"candidates[{key!r}] must hold exactly one text, got {len(candidates[key])}")
        if len(references[key]) < 1:
            raise ValueError(f"references[{key!r}] is empty")
    return list(candidates)


def cider_d(candidates: Mapping[str, Sequence[str]], references: Mapping[str, Sequence[str]],
            n: int = 4, sigma: float = 6.0) -> tuple[float, np.ndarray]:
    """Corpus CIDEr-D and the per-key scores [K] (keys in the order of `candidates`)."""
    keys = _check(candidates, references)
    refs = [[_ngrams(r, n) for r in references[k]] for k in keys]
    tests = [_ngrams(candidates[k][0], n) for k in keys]
    doc_freq: Counter = Counter()
    for ref_counts in refs:
        doc_freq.update(set(g for counts in ref_counts for g in counts))
    log_num_docs = math.log(float(len(keys)))

    def vectorise(counts: Counter):
        vec = [dict() for _ in range(n)]
        norm = [0.0] * n
        for gram, tf in counts.items():
            order = len(gram) - 1
            weight = float(tf) * (log_num_docs - math.log(max(1.0, doc_freq[gram])))
            vec[order][gram] = weight
            norm[order] += weight * weight
        length = sum(tf for gram, tf in counts.items() if len(gram) == 2)  # coco-caption: bigrams
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for test, ref_counts in zip(tests, refs):
        vec, norm, length = vectorise(test)
        total = np.zeros(n)
        for counts in ref_counts:
            rvec, rnorm, rlength = vectorise(counts)
            penalty = math.exp(-float(length - rlength) ** 2 / (2 * sigma ** 2))
            for order in range(n):
                val = sum(min(w, rvec[order].get(g, 0.0)) * rvec[order].get(g, 0.0)
                          for g, w in vec[order].items())
                if norm[order] != 0 and rnorm[order] != 0:
                    val /= norm[order] * rnorm[order]
                total[order] += val * penalty
        scores.append(float(np.mean(total)) / len(ref_counts) * 10.0)
    scores = np.asarray(scores)
    return float(scores.mean()), scores


def bleu(candidates: Mapping[str, Sequence[str]], references: Mapping[str, Sequence[str]],
         n: int = 4) -> list[float]:
    """Corpus BLEU-1..n (a list of n floats; BLEU-4 is the last)."""
    keys = _check(candidates, references)
    tiny, small = 1e-15, 1e-9
    correct, guess = [0] * n, [0] * n
    test_total, ref_total = 0, 0
    for key in keys:
        test = candidates[key][0]
        test_len = len(test.split())
        ref_lens, max_counts = [], Counter()
        for ref in references[key]:
            ref_lens.append(len(ref.split()))
            for gram, count in _ngrams(ref, n).items():
                max_counts[gram] = max(max_counts[gram], count)
        test_total += test_len
        ref_total += min((abs(length - test_len), length) for length in ref_lens)[1]
        for gram, count in _ngrams(test, n).items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), count)
        for k in range(n):
            guess[k] += max(0, test_len - k)
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_total + tiny) / (ref_total + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def caption_scores(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Raw texts (tokenised here) → {"cider_d", "bleu4"} over the keys of `candidates`."""
    cands = {k: [tokenize(v)] for k, v in candidates.items()}
    refs = {k: [tokenize(r) for r in references[k]] for k in candidates}
    return {"cider_d": cider_d(cands, refs)[0], "bleu4": bleu(cands, refs)[3]}
