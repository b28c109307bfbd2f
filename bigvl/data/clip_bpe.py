"""CLIP's byte-level BPE tokenizer (OpenAI CLIP, open_clip, HF CLIPTokenizer), run by HF `tokenizers`.

Two sources, each with its reference's rules:
- open_clip's vocabulary file (`bpe_simple_vocab_16e6.txt.gz`): the 48,894 merges it lists
  become a `tokenizers` BPE (vocab = 256 byte symbols, the same with '</w>', the merges, then
  <start_of_text> 49406 and <end_of_text> 49407, open_clip's names); text is cleaned as open_clip's
  SimpleTokenizer cleans it: ftfy.fix_text, HTML unescaped twice, whitespace runs → one space,
  stripped, lower-cased; then split by open_clip's regex and byte-level encoded.
- an HF `tokenizer.json` (CLIPTokenizerFast.save_pretrained): used as written (its normaliser:
  NFC, whitespace, lower case), special tokens added here, not by its post-processor.
Rows are <|startoftext|> ids... <|endoftext|>, padded with 0 (open_clip's `tokenize`); bigvl's
`Tokenizer` adds the EOS and the padding, this class yields SOT + ids.

The object has the few methods `bigvl.data.tokenizer.Tokenizer` calls on a sentencepiece
processor (vocab_size, pad_id, bos_id, eos_id, encode, decode), so it is picked by the file
name alone (`is_clip_bpe`).
"""
from __future__ import annotations

import functools
import gzip
import html
import io
import json
import re
import unicodedata
from typing import Sequence

SOT, EOT = "<|startoftext|>", "<|endoftext|>"  # HF's names
OPEN_CLIP_SOT, OPEN_CLIP_EOT = "<start_of_text>", "<end_of_text>"  # open_clip's (matched in text as specials)
# open_clip's SimpleTokenizer pattern (case-insensitive there; the text is lower-cased first anyway)
PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
NUM_MERGES = 49152 - 256 - 2


def is_clip_bpe(path: str) -> bool:
    """True for the files this tokenizer reads: open_clip's .txt.gz vocabulary or an HF tokenizer.json."""
    return path.endswith((".txt.gz", "tokenizer.json"))


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map of the 256 bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def open_clip_clean(text: str) -> str:
    """open_clip's basic_clean + whitespace_clean + lower(): ftfy (when installed; else NFC), HTML
    entities unescaped twice, whitespace runs → one space, stripped, lower-cased."""
    try:
        import ftfy  # optional: open_clip's own dependency; NFC alone differs only on broken text
        text = ftfy.fix_text(text)
    except ImportError:
        text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def _tokenizers():
    """The `tokenizers` package (an optional dependency: CLIP BPE only), or one line saying how to get it."""
    try:
        import tokenizers
    except ImportError:
        raise ValueError("CLIP's BPE tokenizer needs the 'tokenizers' package: pip install 'bigvl[convert]'") from None
    return tokenizers


def _from_open_clip_vocab(data: bytes):
    tk = _tokenizers()
    Regex, Tokenizer, models, pre_tokenizers = tk.Regex, tk.Tokenizer, tk.models, tk.pre_tokenizers
    lines = gzip.GzipFile(fileobj=io.BytesIO(data)).read().decode("utf-8").split("\n")[1:NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [OPEN_CLIP_SOT, OPEN_CLIP_EOT]
    bpe = models.BPE(vocab={s: i for i, s in enumerate(vocab)}, merges=merges, end_of_word_suffix="</w>",
                     unk_token=None)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.add_special_tokens([OPEN_CLIP_SOT, OPEN_CLIP_EOT])
    return tok


class ClipBpe:
    """A CLIP BPE tokenizer from open_clip's vocabulary (.txt.gz) or an HF tokenizer.json (bytes)."""

    def __init__(self, path: str, data: bytes):
        Tokenizer = _tokenizers().Tokenizer
        self.open_clip_rules = path.endswith(".gz")
        if self.open_clip_rules:
            self._tok = _from_open_clip_vocab(data)
        else:
            config = json.loads(data.decode("utf-8"))
            config["post_processor"] = None  # SOT here, EOT and padding by bigvl's Tokenizer
            config["padding"] = config["truncation"] = None
            self._tok = Tokenizer.from_str(json.dumps(config))
        sot, eot = (OPEN_CLIP_SOT, OPEN_CLIP_EOT) if self.open_clip_rules else (SOT, EOT)
        self._sot, self._eot = self._tok.token_to_id(sot), self._tok.token_to_id(eot)
        if self._sot is None or self._eot is None:
            raise ValueError(f"tokenizer {path!r} has no {sot} / {eot} token: not a CLIP BPE tokenizer")
        self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}

    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def pad_id(self) -> int:
        return 0  # open_clip pads with 0 ('!'): harmless, every position after EOT is ignored

    def bos_id(self) -> int:
        return self._sot

    def eos_id(self) -> int:
        return self._eot

    def _ids(self, text: str) -> list[int]:
        text = open_clip_clean(text) if self.open_clip_rules else text
        return [self._sot] + self._tok.encode(text, add_special_tokens=False).ids

    def encode(self, texts: str | Sequence[str], out_type=int):
        """[SOT, ids...] of one text, or a list of them for a list of texts (no EOT, no padding)."""
        if isinstance(texts, str):
            return self._ids(texts)
        return [self._ids(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ids (SOT/EOT dropped), '</w>' read as a space, as open_clip decodes."""
        pieces = "".join(self._tok.id_to_token(int(i)) or "" for i in ids if int(i) not in (self._sot, self._eot))
        raw = bytearray(self._byte_decoder.get(c, ord(" ")) for c in pieces.replace("</w>", " "))
        return raw.decode("utf-8", errors="replace").strip()
