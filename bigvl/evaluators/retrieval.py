"""Image↔text retrieval recall@k with one caption per image (short, alt or full long captions).

Ties count against the query (bigvl/evaluators/ranking.py).
"""
from __future__ import annotations

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from bigvl.evaluators.ranking import rank_of_true, similarities
from bigvl.evaluators.splits import SplitCache, split_cache


def recall_at_k(image_embeds: np.ndarray, text_embeds: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways; text i describes image i. [N,E] each.

    Ties count against the query (`rank_of_true`).
    """
    sims = similarities(image_embeds, text_embeds)  # [N images, N texts]
    diag = np.diag(sims)
    i2t_rank = rank_of_true(sims, diag)
    t2i_rank = rank_of_true(sims.T, diag)
    out = {}
    for k in ks:
        out[f"i2t_r{k}"] = float((i2t_rank < k).mean())
        out[f"t2i_r{k}"] = float((t2i_rank < k).mean())
    return out


def caption_texts(records: list[dict], field: str) -> list[str]:
    """captions[field] of each record ('alt' = the alt-text); KeyError names the record."""
    if field == "alt":
        return [r["alt_text"] for r in records]
    missing = [r.get("id") for r in records if field not in r["captions"]]
    if missing:
        raise KeyError(f"retrieval split: record {missing[0]!r} has no caption {field!r}")
    return [r["captions"][field] for r in records]


def evaluate(encoder, split_path: str, fields: dict[str, str],
             splits: SplitCache | None = None) -> dict[str, dict[str, float]]:
    """Retrieval on one split for several query fields, the images encoded once.

    fields: {name: caption field}, e.g. {"retrieval": "short", "long_retrieval": "long"}
    (long captions are queries as they are, truncated by the text tower's context only).
    Returns {name: recall_at_k(...)}. splits: the evaluation's SplitCache (None = a fresh one).
    """
    splits = split_cache(encoder, splits)
    _, records = splits.load(split_path)
    image_embeds = splits.image_embeds(split_path)
    return {name: recall_at_k(image_embeds, encoder.encode_texts(caption_texts(records, field)))
            for name, field in fields.items()}


# An `evals` entry of type "retrieval": the split (records with captions) and the caption field that
# queries ('alt' = the alt-text; a second entry with field "long" retrieves with the long captions).
OPTIONS = {"split": "", "field": "short"}


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's recall@k both ways (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, {"entry": entry.field}, splits)["entry"]


def chance(entry) -> dict[str, float]:
    """recall@k of a random model: k / images of the split."""
    reader = ArrayRecordReader(entry.split)
    num = reader.num_records()
    reader.close()
    return {f"{way}_r{k}": min(1.0, k / num) for k in (1, 5, 10) for way in ("i2t", "t2i")}
