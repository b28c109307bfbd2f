"""Text → token ids with a sentencepiece model: fixed-length rows ending in EOS.

    tok = Tokenizer("tokenizer.model")
    tok.encode(["a red circle"], length=16)  # int32 [1, 16]: ids..., eos, 0, 0, ...

The file picks the kind (`data.tokenizer`): a sentencepiece .model (bigvl's own, SigLIP's), or
CLIP's BPE, open_clip's `bpe_simple_vocab_16e6.txt.gz` or an HF `tokenizer.json`
(bigvl/data/clip_bpe.py: rows <start>, ids..., <end>, 0, ... as open_clip's `tokenize`).

A model's text tower decides the padding id and the text normalisation, not the tokenizer file:
`Tokenizer.for_model(path, config.model.text)` pads with `model.text.pad_id` (SigLIP's
sentencepiece model says pad 0, its checkpoints were trained padded with 1, its EOS), applies
`model.text.normalize` and checks vocab size, BOS and EOS against the model. Every path that
encodes text for a model (training data, `bigvl.load`, `evaluate`, the captioners) builds it so.

`train_tokenizer` trains a model in-process (used by the synthetic world and `data/`
tools) with the ids every bigvl model assumes: pad 0, unk 1, bos 2, eos 3.
"""
from __future__ import annotations

import io
import os
import re
import string
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from bigvl.data.clip_bpe import ClipBpe, is_clip_bpe

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
NORMALIZERS = ("", "siglip")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str, kind: str) -> str:
    """The text as a model's tokenizer pipeline saw it. kind "" = unchanged; "siglip" = big_vision's
    `canonicalize_text` (underscores to spaces, ASCII punctuation removed, lower case, runs of
    whitespace to one space, stripped), what its SigLIP evaluations and transformers' SiglipTokenizer
    apply (the latter without the underscore step: "a_b" becomes "ab" there, "a b" here)."""
    if kind == "siglip":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
        return re.sub(r"\s+", " ", text).strip()
    if kind:
        raise ValueError(f"config key 'model.text.normalize': {kind!r} is not one of {NORMALIZERS}")
    return text


class Tokenizer:
    """A sentencepiece model file wrapped for batched, fixed-length encoding.

    Picklable (it carries the serialised model, not an open handle), so it can be
    shipped to grain worker processes.
    """

    def __init__(self, path: str | os.PathLike, pad_id: int | None = None, normalize: str = ""):
        """pad_id: the id rows are padded with (None: the file's own pad id, 0 if it has none);
        normalize: `normalize_text`'s kind, applied before encoding and counting."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer model {path!r} does not exist")
        normalize_text("", normalize)  # a bad kind fails here, naming the key
        self._pad_override, self.normalize = pad_id, normalize
        with open(path, "rb") as f:
            self._load(path, f.read())

    @classmethod
    def for_model(cls, path: str | os.PathLike, text_cfg) -> "Tokenizer":
        """The tokenizer file as the model `text_cfg` (config.model.text) reads text: padded with its
        pad_id, normalised by its `normalize`; ValueError naming the key if the vocabulary or the
        BOS / EOS ids do not match (`check_model_text`)."""
        tokenizer = cls(path, pad_id=text_cfg.get("pad_id"), normalize=text_cfg.get("normalize", "") or "")
        tokenizer.check_model_text(text_cfg)
        return tokenizer

    def _load(self, path: str, model_proto: bytes) -> None:
        self.path = path
        self._model_proto = model_proto
        if is_clip_bpe(path):
            self._sp = ClipBpe(path, model_proto)
            return
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as e:
            raise ValueError(f"tokenizer model {path!r} is not a sentencepiece model ({e})") from None
        if self._sp.eos_id() < 0:
            raise ValueError(f"tokenizer model {path!r} has no EOS piece; bigvl needs one")

    def __getstate__(self):
        return {"path": self.path, "model_proto": self._model_proto, "pad_id": self._pad_override,
                "normalize": self.normalize}

    def __setstate__(self, state):
        self._pad_override, self.normalize = state.get("pad_id"), state.get("normalize", "")
        self._load(state["path"], state["model_proto"])

    @property
    def vocab_size(self) -> int:
        """Number of pieces; every id is in [0, vocab_size)."""
        return self._sp.vocab_size()

    @property
    def pad_id(self) -> int:
        """The padding id: the model's (`for_model`), else the file's (0 for bigvl-trained models; 0 when
        the file defines none)."""
        return max(self._sp.pad_id(), 0) if self._pad_override is None else int(self._pad_override)

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def bos_id(self) -> int:
        """The BOS id (-1 when the model defines none)."""
        return self._sp.bos_id()

    def check_model_text(self, text_cfg) -> None:
        """Raises ValueError naming the `model.text` key that does not match this tokenizer:
        vocab_size below the number of pieces, or a special id (bos_id, eos_id; pad_id unless this
        tokenizer pads with the model's, as `for_model` builds it) that differs."""
        if self.vocab_size > text_cfg.vocab_size:
            raise ValueError(f"config key 'model.text.vocab_size': {text_cfg.vocab_size} is smaller than the "
                             f"{self.vocab_size} pieces of tokenizer {self.path}")
        for name in ("pad_id", "bos_id", "eos_id"):
            want = text_cfg.get(name)
            if want is not None and getattr(self, name) >= 0 and want != getattr(self, name):
                raise ValueError(f"config key 'model.text.{name}': {want} but tokenizer {self.path} has "
                                 f"{name} {getattr(self, name)}")

    def encode(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Token ids int32 [len(texts), length]: text ids then EOS, right-padded with `pad_id`.

        Too long texts are truncated so that EOS is always the last real token.
        """
        if isinstance(texts, str):
            raise TypeError("Tokenizer.encode takes a list of texts, not a single string")
        if length < 1:
            raise ValueError(f"length must be ≥ 1 (room for EOS), got {length}")
        rows = np.full((len(texts), length), self.pad_id, dtype=np.int32)
        texts = [normalize_text(t, self.normalize) for t in texts] if self.normalize else list(texts)
        for i, ids in enumerate(self._sp.encode(texts, out_type=int)):
            ids = ids[:length - 1] + [self.eos_id]
            rows[i, :len(ids)] = ids
        return rows

    def count_tokens(self, text: str) -> int:
        """Number of text tokens of `text` (normalised as `encode` does), EOS not counted."""
        return len(self._sp.encode(normalize_text(text, self.normalize), out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a 1-D id sequence, stopping at the first EOS or padding id.

        Ids outside [0, vocab_size) are dropped: a model's vocabulary may be larger than the
        tokenizer's pieces (model.text.vocab_size ≥ pieces), and an undertrained captioner can emit them.
        """
        kept = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i in (self.eos_id, self.pad_id):
                break
            if 0 <= i < self.vocab_size:
                kept.append(int(i))
        return self._sp.decode(kept)


def train_tokenizer(texts: Iterable[str], out_prefix: str | os.PathLike, vocab_size: int,
                    **trainer_options) -> Path:
    """Trains a BPE sentencepiece model on `texts`; writes PREFIX.model and PREFIX.vocab.

    Ids: pad 0, unk 1, bos 2, eos 3; unknown characters fall back to bytes; digits are
    single pieces. The vocabulary is a soft limit (a small corpus gives fewer pieces).
    Single-threaded, so the same texts give the same model bytes. Extra `trainer_options`
    go to `SentencePieceTrainer.train`. Returns the path of the .model file.
    """
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    sentences = (" ".join(t.split()) for t in texts if isinstance(t, str) and t.strip())
    options = dict(
        model_type="bpe", vocab_size=int(vocab_size), hard_vocab_limit=False, split_digits=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        byte_fallback=True, character_coverage=0.9995, num_threads=1,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, minloglevel=2,
    )
    options.update(trainer_options)
    model = io.BytesIO()  # not model_prefix: it would store the (varying) path in the model
    spm.SentencePieceTrainer.train(sentence_iterator=sentences, model_writer=model, **options)
    model_path = out_prefix.with_name(out_prefix.name + ".model")
    model_path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n"
                    for i in range(processor.vocab_size()))
    out_prefix.with_name(out_prefix.name + ".vocab").write_text(vocab, encoding="utf-8")
    return model_path
