"""Image↔text retrieval recall@k with one caption per image."""
from __future__ import annotations

import numpy as np

from bigvl.evaluators.splits import load_split


def recall_at_k(image_embeds: np.ndarray, text_embeds: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways; text i describes image i. [N,E] each.

    Ties count against the query (rank = number of candidates scoring ≥ the true one, minus 1).
    """
    sims = image_embeds @ text_embeds.T  # [N images, N texts]
    diag = np.diag(sims)
    i2t_rank = (sims >= diag[:, None]).sum(axis=1) - 1
    t2i_rank = (sims >= diag[None, :]).sum(axis=0) - 1
    out = {}
    for k in ks:
        out[f"i2t_r{k}"] = float((i2t_rank < k).mean())
        out[f"t2i_r{k}"] = float((t2i_rank < k).mean())
    return out


def evaluate(encoder, split_path: str, field: str = "short") -> dict[str, float]:
    """Retrieval on a split whose records carry captions[field] (or alt_text for 'alt')."""
    images, records = load_split(split_path, encoder.image_size)
    texts = [r["alt_text"] if field == "alt" else r["captions"][field] for r in records]
    return recall_at_k(encoder.encode_images(images), encoder.encode_texts(texts))
