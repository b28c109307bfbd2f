"""CIDEr-D and BLEU against pycocoevalcap 1.2 (fixture: tests/fixtures/make_caption_metrics_fixture.py)."""
import json
from pathlib import Path

import numpy as np

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
