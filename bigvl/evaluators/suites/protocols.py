"""The published protocols on lazily read suites, with CLIP_benchmark's metric names.

- zero-shot: per class, the prompt embeddings of every template averaged and renormalised
  (computed once); images encoded chunk by chunk and scored against the C class embeddings
  ([chunk, C] at a time, never [N, N]); acc1 / acc5 / mean_per_class_recall; acc5 is NaN with
  fewer than 5 classes, as CLIP_benchmark writes it.
- retrieval with several captions per image: image→text is a hit at k when any of the
  image's captions is in its top k (`text_retrieval_recall@k`), text→image per caption
  (`image_retrieval_recall@k`); scored in chunks of queries.
- pairs (SugarCrepe, ARO): acc = P(score(image, true) > score(image, false)); for ARO the
  mean over relations / attribute pairs of that (the published macro-average), the mean over
  pairs then being acc_micro.

Every rank uses the shared tie rule (`bigvl.evaluators.ranking`): float64 cosines, a
candidate within TIE_TOLERANCE of the true one ranks above it, so a collapsed model scores
at most chance. Image encoding shards over the encoder's devices (`Encoder.encode_images`);
with several hosts each host decodes only its rows of a chunk.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Iterator

import jax
import numpy as np
from tqdm import tqdm

from bigvl.evaluators.ranking import TIE_TOLERANCE, rank_of_true, similarities
from bigvl.evaluators.suites.images import load_batch
from bigvl.evaluators.suites.tasks import Classification, Pairs, Retrieval, fill_template

log = logging.getLogger(__name__)
KS = (1, 5, 10)


def _chunk_size(encoder) -> int:
    return int(getattr(encoder, "batch_size", 256))


def iter_image_embeds(encoder, images, desc: str = "images") -> Iterator[tuple[int, np.ndarray]]:
    """(start, L2-normalised embeds [c, E]) per chunk of `encoder.batch_size` images, read and decoded lazily.

    With several JAX processes each host decodes only the rows of a chunk that it feeds to its
    devices (`bigvl.inference.batched.run_in_chunks` takes rows [lo, hi) of each host); the
    other rows stay zero and every host gets the whole chunk's embeddings back.
    Logs the throughput (images/s) when done; a tqdm bar shows progress on a terminal.
    """
    n, chunk = len(images), _chunk_size(encoder)
    hosts, host = jax.process_count(), jax.process_index()
    size, prepare = encoder.image_size, getattr(encoder, "prepare", None)
    start_time = time.perf_counter()
    with tqdm(total=n, desc=desc, unit="img", disable=None, leave=False) as bar:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            if hosts == 1:
                batch = load_batch(images, range(start, stop), size, prepare)
            else:
                lo, hi = host * chunk // hosts, (host + 1) * chunk // hosts
                mine = [start + r for r in range(lo, hi) if start + r < stop] or [stop - 1]
                loaded = load_batch(images, mine, size, prepare)
                batch = np.zeros((chunk,) + loaded.shape[1:], np.uint8)  # [S, S, 3], NaFlex: packed [L + 1, p·p·3]
                batch[lo:lo + len(mine)] = loaded
            embeds = np.asarray(encoder.encode_images(batch))[:stop - start]
            bar.update(stop - start)
            yield start, embeds
    seconds = time.perf_counter() - start_time
    log.info("%s: encoded %d images in %.1f s (%.1f images/s)", desc, n, seconds, n / max(seconds, 1e-9))


def encode_all_images(encoder, images, desc: str = "images") -> np.ndarray:
    """L2-normalised float32 [N, E] of every image (retrieval sets: N ≤ tens of thousands)."""
    parts = [e for _, e in iter_image_embeds(encoder, images, desc)]
    return np.concatenate(parts).astype(np.float32)


def class_embeddings(encoder, classnames: list[str], templates: list[str]) -> np.ndarray:
    """[C, E]: per class the mean of its normalised prompt embeddings over templates, renormalised."""
    prompts = [fill_template(t, name) for name in classnames for t in templates]
    embeds = np.asarray(encoder.encode_texts(prompts), np.float64).reshape(len(classnames), len(templates), -1)
    mean = embeds.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def top_k_accuracy(ranks: np.ndarray, k: int, num_classes: int) -> float:
    """P(rank < k); NaN when k > num_classes, as CLIP_benchmark (clip_benchmark/metrics/
    zeroshot_classification.py, evaluate) sets acc5 = float("nan") for a dataset with fewer than 5
    classes instead of a top-5 that every image trivially passes."""
    return float("nan") if k > num_classes else float((ranks < k).mean())


def classification_metrics(ranks: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """ranks [N] (0 = correct at top-1, ties counted against), labels [N] → acc1, acc5, mean_per_class_recall.

    acc5 is NaN when num_classes < 5 (CLIP_benchmark). mean_per_class_recall: the mean over the
    classes present in `labels` of the fraction of their images ranked first (CLIP_benchmark's
    balanced accuracy).
    """
    per_class = [float((ranks[labels == c] == 0).mean()) for c in np.unique(labels)]
    return {"acc1": float((ranks < 1).mean()), "acc5": top_k_accuracy(ranks, 5, num_classes),
            "mean_per_class_recall": float(np.mean(per_class))}


def zero_shot(encoder, task: Classification, desc: str = "zero-shot",
              classes: np.ndarray | None = None, scores_out: list | None = None) -> dict[str, float]:
    """Zero-shot classification metrics of `task` (class embeddings computed once, images in chunks).

    classes: the class embeddings [C, E] if already computed (`class_embeddings`), else computed here.
    scores_out: a list that gets each chunk's image-class cosines float64 [chunk, C], in image order
    (per-image predictions from the same pass).
    """
    classes = class_embeddings(encoder, task.classnames, task.templates) if classes is None else classes
    ranks = np.empty(len(task.labels), np.int64)
    for start, embeds in iter_image_embeds(encoder, task.images, desc):
        labels = task.labels[start:start + len(embeds)]
        scores = similarities(embeds, classes)  # [chunk, C] float64
        if scores_out is not None:
            scores_out.append(scores)
        if task.label_sets is None:
            ranks[start:start + len(embeds)] = rank_of_true(scores, scores[np.arange(len(labels)), labels])
        else:  # several correct classes per image (ImageNet-ReaL)
            positive = np.zeros(scores.shape, bool)
            for row, classes_of in enumerate(task.label_sets[start:start + len(embeds)]):
                positive[row, list(classes_of)] = True
            ranks[start:start + len(embeds)] = multi_positive_rank(scores, positive)
    num_classes = len(task.classnames)
    if task.label_sets is not None:  # ReaL: images without any valid label are left out
        keep = np.array([len(s) > 0 for s in task.label_sets])
        return {"acc1": float((ranks[keep] < 1).mean()), "acc5": top_k_accuracy(ranks[keep], 5, num_classes)}
    return classification_metrics(ranks, task.labels, num_classes)


def multi_positive_rank(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """scores [Q, C], positive bool [Q, C] → int [Q]: how many non-positive candidates score ≥ the best
    positive − TIE_TOLERANCE (so "a positive is in the top k" is rank < k; ties count against)."""
    best = np.where(positive, scores, -np.inf).max(axis=1)
    return ((scores >= best[:, None] - TIE_TOLERANCE) & ~positive).sum(axis=1)


def multi_caption_ranks(image_embeds: np.ndarray, text_embeds: np.ndarray, text_image: np.ndarray,
                        chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(i2t_rank [N], t2i_rank [T]); image_embeds [N,E], text_embeds [T,E], text_image [T] = each text's image.

    i2t_rank[i]: how many texts of OTHER images score ≥ the best of image i's own texts
    (− TIE_TOLERANCE), so "any of its captions in the top k" is i2t_rank < k. t2i_rank[j]:
    `rank_of_true` of text j's image among all images. Scored in chunks of `chunk` queries.
    """
    n = len(image_embeds)
    i2t = np.empty(n, np.int64)
    for s in range(0, n, chunk):
        scores = similarities(image_embeds[s:s + chunk], text_embeds)  # [c, T]
        i2t[s:s + chunk] = multi_positive_rank(scores, text_image[None, :] == np.arange(s, s + len(scores))[:, None])
    t2i = np.empty(len(text_embeds), np.int64)
    for s in range(0, len(text_embeds), chunk):
        scores = similarities(text_embeds[s:s + chunk], image_embeds)  # [c, N]
        t2i[s:s + chunk] = rank_of_true(scores, scores[np.arange(len(scores)), text_image[s:s + chunk]])
    return i2t, t2i


def retrieval_metrics(i2t_rank: np.ndarray, t2i_rank: np.ndarray, ks=KS) -> dict[str, float]:
    """CLIP_benchmark's names: image_retrieval = text→image, text_retrieval = image→text."""
    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = float((t2i_rank < k).mean())
        out[f"text_retrieval_recall@{k}"] = float((i2t_rank < k).mean())
    return out


def retrieval(encoder, task: Retrieval, desc: str = "retrieval") -> dict[str, float]:
    """Retrieval metrics of `task` (every caption a text→image query; image→text hits any own caption)."""
    texts = [t for caps in task.captions for t in caps]
    text_image = np.repeat(np.arange(len(task.captions)), [len(c) for c in task.captions])
    image_embeds = encode_all_images(encoder, task.images, desc)
    text_embeds = np.asarray(encoder.encode_texts(texts), np.float32)
    return retrieval_metrics(*multi_caption_ranks(image_embeds, text_embeds, text_image))


def pair_wins(image_embeds: np.ndarray, pos_embeds: np.ndarray, neg_embeds: np.ndarray) -> np.ndarray:
    """bool [N]: float64 score(image, true) > score(image, false) + TIE_TOLERANCE (a tie is a miss)."""
    img = np.asarray(image_embeds, np.float64)
    pos = (img * np.asarray(pos_embeds, np.float64)).sum(-1)
    neg = (img * np.asarray(neg_embeds, np.float64)).sum(-1)
    return pos > neg + TIE_TOLERANCE


def pair_metrics(wins: np.ndarray, task: Pairs) -> dict[str, float]:
    """acc and acc_<kind> per kind (when there are several) from wins [N] of `task`'s pairs.

    task.macro (ARO): acc = the mean over kinds with ≥ task.min_kind_count pairs and not in
    task.excluded_kinds of each kind's accuracy (NaN if none qualifies), acc_micro = the mean over
    all pairs. Otherwise acc = the mean over all pairs.
    """
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for kind, win in zip(task.kinds, wins):
        by_kind[kind].append(bool(win))
    micro = float(np.mean(wins))
    if task.macro:
        counted = [np.mean(v) for k, v in by_kind.items()
                   if len(v) >= task.min_kind_count and k not in task.excluded_kinds]
        out = {"acc": float(np.mean(counted)) if counted else float("nan")}
    else:
        out = {"acc": micro}
    if len(by_kind) > 1:
        out.update({f"acc_{k}": float(np.mean(v)) for k, v in sorted(by_kind.items())})
    if task.macro:
        out["acc_micro"] = micro  # after the kinds: a kind named "micro" cannot overwrite it
    return out


def pairs(encoder, task: Pairs, desc: str = "pairs") -> dict[str, float]:
    """`pair_metrics` of `task` (images encoded in chunks, true and false captions once)."""
    image_embeds = encode_all_images(encoder, task.images, desc)
    text = np.asarray(encoder.encode_texts(list(task.positives) + list(task.negatives)), np.float32)
    return pair_metrics(pair_wins(image_embeds, text[:len(task.positives)], text[len(task.positives):]), task)


PROTOCOLS = {Classification: ("zeroshot_classification", zero_shot),
             Retrieval: ("zeroshot_retrieval", retrieval),
             Pairs: ("image_caption_selection", pairs)}


def run_task(encoder, task, desc: str, **options) -> tuple[str, dict[str, float]]:
    """(CLIP_benchmark task name, metrics) of any task; `options` go to its protocol (zero_shot's scores_out)."""
    name, fn = PROTOCOLS[type(task)]
    return name, fn(encoder, task, desc, **options)
