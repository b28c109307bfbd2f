"""Tokenizer: fixed-length rows ending in EOS, padding 0, checked against sentencepiece itself."""
import pickle

import numpy as np
import pytest
import sentencepiece as spm

from bigvl.data.tokenizer import Tokenizer, train_tokenizer

CORPUS = [
    "a red circle to the left of a blue square",
    "a green triangle above an orange star on a dotted beige background",
    "free stock image download",
    "IMG_2041.jpg",
    "The background is grey with faint stripes. There is a small purple ring in the top left.",
] * 50


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_tokenizer(CORPUS, tmp_path_factory.mktemp("tok") / "spm", vocab_size=600)


@pytest.fixture(scope="module")
def tok(model_path):
    return Tokenizer(model_path)


@pytest.fixture(scope="module")
def reference(model_path):
    return spm.SentencePieceProcessor(model_file=str(model_path))


def test_special_ids(tok, reference):
    assert (tok.pad_id, tok.eos_id) == (0, 3)
    assert [reference.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 4 < tok.vocab_size <= 600


def test_encode_pads_and_ends_with_eos(tok, reference):
    texts = ["a red circle", "a blue square above a green triangle"]
    rows = tok.encode(texts, length=16)
    assert rows.shape == (2, 16) and rows.dtype == np.int32
    for row, text in zip(rows, texts):
        ids = reference.encode(text)
        assert row[:len(ids)].tolist() == ids
        assert row[len(ids)] == 3
        assert (row[len(ids) + 1:] == 0).all()


def test_truncation_keeps_eos(tok, reference):
    text = CORPUS[4]
    ids = reference.encode(text)
    assert len(ids) > 6
    row = tok.encode([text], length=6)[0]
    assert row.tolist() == ids[:5] + [3]
    assert tok.encode([text], length=1)[0].tolist() == [3]


def test_round_trip_and_count(tok, reference):
    for text in CORPUS[:5]:
        row = tok.encode([text], length=128)[0]
        assert tok.decode(row) == text
        assert tok.count_tokens(text) == len(reference.encode(text)) == int((row != 0).sum()) - 1
    assert tok.decode([tok.encode(["a red circle"], 8)[0][0], 3, 5, 6]) == reference.decode(
        reference.encode("a red circle")[:1])


def test_unknown_characters_fall_back_to_bytes(tok):
    row = tok.encode(["a red ☃"], length=32)[0]
    assert 1 not in row.tolist()  # no <unk>: bytes instead
    assert tok.decode(row) == "a red ☃"


def test_errors(tmp_path, tok):
    missing = tmp_path / "nope.model"
    with pytest.raises(FileNotFoundError, match="nope.model"):
        Tokenizer(missing)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        Tokenizer(bad)
    with pytest.raises(TypeError):
        tok.encode("a red circle", 8)
    with pytest.raises(ValueError):
        tok.encode(["x"], 0)


def test_training_is_deterministic(tmp_path, model_path):
    again = train_tokenizer(CORPUS, tmp_path / "again", vocab_size=600)
    assert again.read_bytes() == model_path.read_bytes()
    assert (tmp_path / "again.vocab").is_file()


def test_pickles(tok):
    copy = pickle.loads(pickle.dumps(tok))
    np.testing.assert_array_equal(copy.encode(CORPUS[:3], 12), tok.encode(CORPUS[:3], 12))


def test_a_model_decides_padding_and_normalisation(tmp_path):
    """SigLIP's case: a T5-style sentencepiece file (pad 0, eos 1, no bos) read for a model with pad_id 1
    and normalize 'siglip' pads with 1 (the EOS, as big_vision's `tokenize(pad_value=1)`) and encodes the
    canonical text (lower case, no punctuation, single spaces), rows built here from sentencepiece itself;
    a model whose EOS differs from the file's is refused naming the key; pickling keeps both settings."""
    import ml_collections
    path = train_tokenizer(["a photo of a red circle", "the blue square"] * 20, tmp_path / "t5", vocab_size=300,
                           pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    text = ml_collections.ConfigDict({"vocab_size": 320, "pad_id": 1, "eos_id": 1, "bos_id": 2, "normalize": "siglip"})
    tok = Tokenizer.for_model(path, text)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    ids = sp.encode("a photo of a red circle", out_type=int) + [1]
    want = np.array([ids + [1] * (16 - len(ids))], np.int32)
    np.testing.assert_array_equal(tok.encode(["A  Photo, of a RED circle!"], 16), want)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(tok)).encode(["A  Photo, of a RED circle!"], 16), want)
    assert Tokenizer(path).encode(["a photo"], 8)[0, -1] == 0  # the file alone pads with its own 0
    assert tok.count_tokens("A photo!") == len(sp.encode("a photo"))
    with pytest.raises(ValueError, match="model.text.eos_id"):
        Tokenizer.for_model(path, ml_collections.ConfigDict({**text.to_dict(), "eos_id": 3}))
    with pytest.raises(ValueError, match="model.text.normalize"):
        Tokenizer(path, normalize="lower")
