"""Text embeddings of texts longer than a model's context: the mean over overlapping windows (TULIP).

TULIP distils a long-context text tower from a 77-token CLIP teacher; for a caption longer than
the teacher's context the target is the teacher's embeddings of overlapping windows of it, pooled.
Here: a text of n > C − 1 tokens (C = the teacher's context, one slot kept for EOS) is cut into
windows of C − 1 tokens starting every `stride` tokens (default (C − 1) // 2, the last window
ending at the text's end), each window gets its EOS and is embedded, and the L2-normalised
embeddings are averaged and normalised again. Texts that fit are embedded as `encode_texts` does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_TOKENS = 4096  # a text longer than this is cut here before windowing


def window_starts(num_tokens: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of `window` tokens over `num_tokens`, every `stride`, the last one
    ending at the end (one window [0] when the text fits)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be >= 1")
    if num_tokens <= window:
        return [0]
    starts = list(range(0, num_tokens - window, stride))
    return starts + [num_tokens - window]


def windowed_tokens(tokens: np.ndarray, pad_id: int, eos_id: int, context: int,
                    stride: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """tokens int32 [N, L] (text ids, EOS, pads; L may exceed `context`) → (windows int32 [W, context],
    owner int32 [W]: the text each window belongs to). stride 0 = (context − 1) // 2."""
    window = context - 1
    stride = stride or max(window // 2, 1)
    rows, owner = [], []
    for i, row in enumerate(np.asarray(tokens)):
        ids = [int(t) for t in row if t not in (pad_id, eos_id)]
        for start in window_starts(len(ids), window, stride):
            piece = ids[start:start + window] + [eos_id]
            rows.append(piece + [pad_id] * (context - len(piece)))
            owner.append(i)
    return np.asarray(rows, np.int32).reshape(-1, context), np.asarray(owner, np.int32)


def encode_texts_windowed(encoder, texts: Sequence[str], stride: int = 0) -> np.ndarray:
    """texts → L2-normalised float32 [N, E]: each the normalised mean of the `encoder`'s embeddings
    of its windows (`windowed_tokens` at the encoder's context length); a text that fits is one window.

    encoder: a `bigvl.inference.encoder.Encoder` (its tokenizer and `encode_tokens`)."""
    tokenizer = encoder.tokenizer
    tokens = tokenizer.encode(list(texts), MAX_TOKENS)
    windows, owner = windowed_tokens(tokens, tokenizer.pad_id, tokenizer.eos_id, encoder.context_length, stride)
    embeds = np.asarray(encoder.encode_tokens(windows), np.float32)
    pooled = np.zeros((len(texts), embeds.shape[-1]), np.float32)
    np.add.at(pooled, owner, embeds)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
