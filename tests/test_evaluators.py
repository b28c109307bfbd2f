"""Evaluator metrics against naive per-query loops."""
import numpy as np

from bigvl.evaluators.hard_negatives import hard_negative_accuracy
from bigvl.evaluators.retrieval import recall_at_k
from bigvl.evaluators.zero_shot import zero_shot_accuracy


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_recall_at_k_matches_naive_loop():
    rng = np.random.default_rng(0)
    images, texts = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(50, 8)))
    texts[:20] = images[:20] + 0.1 * texts[:20]  # some matches are easy
    got = recall_at_k(images, texts)
    for k in (1, 5, 10):
        i2t = np.mean([i in np.argsort(-(images[i] @ texts.T))[:k] for i in range(50)])
        t2i = np.mean([j in np.argsort(-(texts[j] @ images.T))[:k] for j in range(50)])
        assert got[f"i2t_r{k}"] == i2t
        assert got[f"t2i_r{k}"] == t2i
    assert got["i2t_r1"] >= 0.4  # the 20 easy pairs are found


def test_recall_identical_embeddings_is_perfect_and_ties_count_against():
    x = _unit(np.random.default_rng(1).normal(size=(10, 4)))
    assert recall_at_k(x, x)["t2i_r1"] == 1.0
    same = np.ones((3, 4)) / 2.0  # every candidate ties: no query is retrieved at rank 1
    assert recall_at_k(same, same)["i2t_r1"] == 0.0


def test_zero_shot_accuracy_matches_naive():
    rng = np.random.default_rng(2)
    classes = _unit(rng.normal(size=(7, 16)))
    labels = rng.integers(0, 7, size=40)
    images = _unit(classes[labels] + 0.9 * rng.normal(size=(40, 16)))
    got = zero_shot_accuracy(images, labels, classes)
    top1 = np.mean([np.argmax(classes @ images[i]) == labels[i] for i in range(40)])
    top5 = np.mean([labels[i] in np.argsort(-(classes @ images[i]))[:5] for i in range(40)])
    assert got == {"top1": top1, "top5": top5}


def test_hard_negative_accuracy_per_kind():
    image = np.array([[1.0, 0.0]])
    pos = np.array([[0.9, 0.1]])
    negs = [np.array([[0.5, 0.5], [1.0, 0.0]])]  # the second negative beats the positive
    got = hard_negative_accuracy(image, pos, negs, [["swap_colour", "swap_relation"]])
    assert got == {"accuracy": 0.5, "accuracy_swap_colour": 1.0, "accuracy_swap_relation": 0.0}


class _CaptionLookupEncoder:
    """Images → one-hot of their row; a text → one-hot of the record whose `field` caption it is."""
    image_size = 32

    def __init__(self, records_by_text):
        self.records_by_text, self.queries = records_by_text, []

    def encode_images(self, images):
        return np.eye(len(images), 64)

    def encode_texts(self, texts):
        self.queries.append(list(texts))
        return np.stack([np.eye(64)[self.records_by_text.get(t, 63)] for t in texts])


def test_long_caption_retrieval_queries_with_the_full_long_captions(tiny_world):
    from bigvl.evaluators import retrieval
    from bigvl.evaluators.splits import load_split
    path = str(tiny_world / "retrieval.array_record")
    _, records = load_split(path, 32)
    by_long = {r["captions"]["long"]: i for i, r in enumerate(records)}
    encoder = _CaptionLookupEncoder(by_long)
    out = retrieval.evaluate(encoder, path, {"retrieval": "short", "long_retrieval": "long"})
    assert out["long_retrieval"]["t2i_r1"] == 1.0 and out["long_retrieval"]["i2t_r1"] == 1.0
    assert out["retrieval"]["t2i_r1"] == 0.0  # short captions are not the long ones
    assert encoder.queries[1] == [r["captions"]["long"] for r in records]
    assert all(len(q.split(". ")) >= 2 for q in encoder.queries[1])  # whole multi-sentence captions
