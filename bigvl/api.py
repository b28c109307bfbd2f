"""The notebook API: load a trained run, encode, classify zero-shot, retrieve.

    import bigvl
    run = bigvl.load("workdirs/demo")
    labels, probs = bigvl.zero_shot_classify(run, images, ["red circle", "blue square"])
    top, scores = bigvl.retrieve(run, ["a red circle left of a blue square"], images, k=5)

Images are uint8 [N,H,W,3] arrays (any size: centre-cropped and resized to the model's).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from bigvl.config import load_config_json
from bigvl.evaluators.zero_shot import class_embeddings
from bigvl.inference.images import prepare_images
from bigvl.inference.run import Run, load_run


def load(workdir: str, step: int | None = None) -> Run:
    """The run in `workdir` (its full config and its params at the latest or given step)."""
    return load_run(workdir, step, config=load_config_json(workdir))


def encode_images(run: Run, images) -> np.ndarray:
    """uint8 [N,H,W,3] → L2-normalised embeddings float32 [N,E]."""
    return run.encoder.encode_images(prepare_images(images, run.encoder.image_size))


def encode_texts(run: Run, texts: Sequence[str]) -> np.ndarray:
    """N strings → L2-normalised embeddings float32 [N,E]."""
    return run.encoder.encode_texts(list(texts))


def zero_shot_classify(run: Run, images, classnames: Sequence[str],
                       templates: Sequence[str] = ("a photo of a {}.",)) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index [N] and softmax probabilities [N,C] over `classnames`."""
    classes = class_embeddings(run.encoder, list(classnames), list(templates))
    logits = encode_images(run, images) @ classes.T * 100.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs


def retrieve(run: Run, queries: Sequence[str], images, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """For each text query, the indices [Q,k] of the best-matching images and their cosine scores."""
    sims = encode_texts(run, queries) @ encode_images(run, images).T
    top = np.argsort(-sims, axis=1)[:, :k]
    return top, np.take_along_axis(sims, top, axis=1)
