"""The notebook API: load a trained run, encode, classify zero-shot, retrieve.

    import bigvl
    run = bigvl.load("workdirs/demo")
    labels, probs = bigvl.zero_shot_classify(run, images, ["red circle", "blue square"])
    top, scores = bigvl.retrieve(run, ["a red circle left of a blue square"], images, k=5)
    maps = bigvl.patch_similarity(run, images, "a red circle")   # where each image matches the text
    texts = bigvl.caption(coca_run, images)                       # CoCa / CLIPS runs (greedy, beam, top-p)

Images are uint8 [N,H,W,3] arrays (any size: centre-cropped and resized to the model's;
grayscale [H,W] and RGBA [H,W,4] images are made RGB, see `bigvl.inference.images`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from bigvl.config import load_config_json
from bigvl.data.image_ops import rgb_image
from bigvl.evaluators.pointing import patch_similarity_maps
from bigvl.evaluators.ranking import similarities
from bigvl.evaluators.zero_shot import class_embeddings
from bigvl.inference.decoding import caption  # noqa: F401  (bigvl.caption: CoCa / CLIPS runs)
from bigvl.inference.images import prepare_images
from bigvl.inference.run import Run, load_run
from bigvl.models.heads import logit_scale_of

SIGMOID_LOSSES = ("sigmoid", "sigmoid_ring")  # SigLIP's: zero-shot probabilities are per-class sigmoids


def load(workdir: str, step: int | None = None) -> Run:
    """The run in `workdir` (its full config and its params at the latest or given step)."""
    return load_run(workdir, step, config=load_config_json(workdir))


def _prepared(run: Run, images, encoder=None) -> np.ndarray:
    """uint8 [N,S,S,3]: images squared as the run's model expects (its encoder's resize rule); NaFlex
    models: each at its aspect ratio as the encoder's max_patches patches (`Encoder.prepare`)."""
    encoder = encoder or run.encoder
    if encoder.max_patches:
        return np.stack([encoder.prepare(rgb_image(np.asarray(image, np.uint8), where=i)) for i, image in enumerate(images)])
    return prepare_images(images, encoder.image_size, encoder.resize, encoder.interpolation)


def encode_images(run: Run, images, max_patches: int | None = None, max_side: int | None = None) -> np.ndarray:
    """uint8 [N,H,W,3] (or grayscale [H,W] / RGBA [H,W,4] images) → L2-normalised embeddings float32 [N,E].

    max_patches (NaFlex runs): the sequence length L to encode at (default: the run's model.image.max_patches);
    or max_side: the side S of the square a square model would read, as its budget L = (S // patch)²."""
    if max_side is not None:
        if max_patches is not None:
            raise ValueError("encode_images: give max_patches or max_side, not both")
        max_patches = (int(max_side) // max(run.encoder.patch_size, 1)) ** 2
    encoder = run.encoder if max_patches is None else run.encoder.with_length(max_patches)
    return encoder.encode_images(_prepared(run, images, encoder))


def encode_texts(run: Run, texts: Sequence[str]) -> np.ndarray:
    """N strings → L2-normalised embeddings float32 [N,E]."""
    return run.encoder.encode_texts(list(texts))


def zero_shot_classify(run: Run, images, classnames: Sequence[str],
                       templates: Sequence[str] = ("a photo of a {}.",)) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index int [N] and probabilities float32 [N,C] over `classnames`, as the run was trained.

    logits = scale · cos(image, class) [N,C], with the run's own learned logit scale
    (exp(params["log_logit_scale"]), capped at config.model.max_logit_scale when > 0);
    a class embedding is the renormalised mean of its prompts' (`templates`) embeddings.
    Softmax-loss runs: probabilities = softmax over the classes (rows sum to 1). Sigmoid-loss
    runs (config.loss.name in SIGMOID_LOSSES, SigLIP): sigmoid(logits + params["logit_bias"]),
    each class's own probability of matching (rows need not sum to 1). The prediction is the
    most similar class either way.
    """
    _require_contrastive(run)
    classes = class_embeddings(run.encoder, list(classnames), list(templates))
    probs = class_probabilities(run, similarities(encode_images(run, images), classes))
    return probs.argmax(axis=1), probs.astype(np.float32)


def _require_contrastive(run: Run) -> None:
    if "log_logit_scale" not in run.params:
        raise ValueError("class probabilities need a contrastive model (one with a learned logit scale); "
                         f"this run's model.kind is {run.config.model.kind!r}")


def class_probabilities(run: Run, cosines: np.ndarray) -> np.ndarray:
    """float64 [N,C] probabilities from image-class cosines [N,C] (normalised embeddings), as the run
    scores them (`zero_shot_classify`): softmax over the classes of scale·cos, or for sigmoid-loss
    runs each class's sigmoid(scale·cos + bias)."""
    _require_contrastive(run)
    scale = float(logit_scale_of(run.params["log_logit_scale"], run.config.model.max_logit_scale))
    logits = scale * np.asarray(cosines, np.float64)
    if run.config.get("loss", {}).get("name") in SIGMOID_LOSSES:
        return np.exp(-np.logaddexp(0.0, -(logits + float(run.params["logit_bias"]))))  # sigmoid, no overflow
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def retrieve(run: Run, queries: Sequence[str], images, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """For each text query, the indices [Q,k] of the best-matching images and their cosine scores."""
    sims = encode_texts(run, queries) @ encode_images(run, images).T
    top = np.argsort(-sims, axis=1)[:, :k]
    return top, np.take_along_axis(sims, top, axis=1)


def patch_similarity(run: Run, images, texts: str | Sequence[str]) -> np.ndarray:
    """Where the model matches each image to its text: float64 [N,g,g] cosines of patch and text.

    texts: one string (for every image) or N strings (text n for image n). Map n holds the
    cosine of each patch embedding of image n (row y, column x of the g × g patch grid)
    with the text's embedding: the scores the pointing game (bigvl.evaluators.pointing)
    takes the argmax of. Two-tower (CLIP / SigLIP) runs only: ValueError otherwise.
    """
    prepared = _prepared(run, images)
    texts = [texts] * len(prepared) if isinstance(texts, str) else list(texts)
    if len(texts) != len(prepared):
        raise ValueError(f"patch_similarity: {len(prepared)} images but {len(texts)} texts (give one or one each)")
    if not run.encoder.has_patches:
        raise ValueError(f"patch_similarity needs patch embeddings in the image-text space (two-tower runs); "
                         f"this run's model.kind is {run.config.model.kind!r}")
    return patch_similarity_maps(run.encoder.encode_patches(prepared), encode_texts(run, texts))
