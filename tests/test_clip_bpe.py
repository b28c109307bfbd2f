"""The CLIP BPE tokenizer against the references' own ids (tests/fixtures/pretrained/tokenizer_ids.json,
written by make_fixtures.py): open_clip's `tokenize` for its vocabulary file, transformers'
CLIPTokenizer for a tokenizer.json; awkward strings (accents, emoji, CJK, HTML entities, long, empty)."""
import json
import os
import pickle

import numpy as np
import pytest

from bigvl.data.tokenizer import Tokenizer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained")


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(FIXTURES, "tokenizer_ids.json"), encoding="utf-8") as f:
        return json.load(f)


def test_open_clip_vocabulary_gives_open_clip_ids(reference):
    tok = Tokenizer(os.path.join(FIXTURES, "bpe_simple_vocab_16e6.txt.gz"))
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (49408, 49406, 49407, 0)
    got = tok.encode(reference["texts"], length=reference["context_length"])
    np.testing.assert_array_equal(got, np.asarray(reference["open_clip"], np.int32))
    assert tok.decode(tok.encode(["Café crème 🐈 hello"], 16)[0]) == "café crème 🐈 hello"
    again = pickle.loads(pickle.dumps(tok))  # shipped to grain workers
    np.testing.assert_array_equal(again.encode(reference["texts"][:3], 77), got[:3])


def test_hf_tokenizer_json_gives_transformers_ids(reference):
    tok = Tokenizer(os.path.join(FIXTURES, "hf_clip_tokenizer", "tokenizer.json"))
    for text, want in zip(reference["texts"], reference["hf_small"]):
        want = want[:76] + [tok.eos_id] if len(want) > 77 else want
        row = tok.encode([text], length=77)[0]
        assert row[:len(want)].tolist() == want, text
        assert not row[len(want):].any()
