"""CIDEr-D and BLEU against pycocoevalcap 1.2 (fixture: tests/fixtures/make_caption_metrics_fixture.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from bigvl.evaluators.caption_metrics import bleu, caption_scores, cider_d, tokenize

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "caption_metrics.json").read_text())


def test_cider_d_matches_pycocoevalcap():
    score, per_key = cider_d(FIXTURE["candidates"], FIXTURE["references"])
    np.testing.assert_allclose(score, FIXTURE["cider_d"], rtol=1e-6)
    np.testing.assert_allclose(per_key, FIXTURE["cider_d_per_key"], rtol=1e-6, atol=1e-12)


def test_bleu_matches_pycocoevalcap():
    np.testing.assert_allclose(bleu(FIXTURE["candidates"], FIXTURE["references"]), FIXTURE["bleu"], rtol=1e-6)


def test_identical_captions_score_perfect_bleu_and_tokenizer():
    refs = {"a": ["a red circle left of a blue square"], "b": ["two shapes on a plain green background"]}
    cands = {k: [v[0]] for k, v in refs.items()}
    np.testing.assert_allclose(bleu(cands, refs)[3], 1.0, rtol=1e-9)
    assert tokenize("A red, circle.  Left-of") == "a red circle left of"
    scores = caption_scores({"a": "A red circle left of a blue square."}, refs)
    assert scores["bleu4"] > 0.99


def test_cider_d_and_bleu_rank_the_right_caption_above_another_images():
    """Properties, not values: a caption equal to its only reference scores CIDEr-D's maximum
    (10: cosine 1 at every n-gram order, no length penalty, ×10) and BLEU 1; handing each image
    another image's reference scores lower, per key and over the corpus; nothing exceeds 10."""
    texts = ["a red circle left of a blue square", "two green rings on a striped white background",
             "a small yellow star above a purple triangle", "an orange square below a large blue circle"]
    refs = {f"k{i}": [t] for i, t in enumerate(texts)}
    right = {k: [v[0]] for k, v in refs.items()}
    wrong = {f"k{i}": [texts[(i + 1) % len(texts)]] for i in range(len(texts))}  # each image, another's text
    right_score, right_per_key = cider_d(right, refs)
    wrong_score, wrong_per_key = cider_d(wrong, refs)
    np.testing.assert_allclose(right_per_key, 10.0, rtol=1e-9)
    assert np.all(wrong_per_key < right_per_key) and wrong_score < right_score
    assert np.all((0.0 <= wrong_per_key) & (wrong_per_key <= 10.0))
    assert bleu(wrong, refs)[3] < bleu(right, refs)[3] == pytest.approx(1.0)
    # the same through the raw-text entry point the evaluators report
    assert caption_scores({k: v[0].upper() + "." for k, v in wrong.items()}, refs)["cider_d"] < \
        caption_scores({k: v[0] for k, v in right.items()}, refs)["cider_d"]
