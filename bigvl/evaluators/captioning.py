"""Captioning quality of CoCa / CLIPS: CIDEr-D and BLEU-4 of decoded captions on a held-out split.

References are each record's captions[field] (the demo world's retrieval split holds
`short` and `long`); CLIPS captions an image given its alt-text (the record's
`alt_text`). Texts are lowercased and split into letter/digit runs before scoring
(`bigvl.evaluators.caption_metrics.tokenize`; pycocoevalcap's PTB tokenizer needs Java).
"""
from __future__ import annotations

from collections import Counter

from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.evaluators.caption_metrics import caption_scores
from bigvl.evaluators.splits import SplitCache, split_cache
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.run_config import CAPTIONING_DEFAULTS


def most_frequent_baseline(train_captions: list[str], references: dict[str, list[str]]) -> dict[str, float]:
    """Scores of captioning every image with the most frequent training caption (a floor to beat)."""
    counts = Counter(train_captions)
    best = max(counts, key=lambda t: (counts[t], t))
    return caption_scores({k: best for k in references}, references)


def generate(encoder, split_path: str, field: str, cfg: DecodeConfig,
             splits: SplitCache | None = None) -> tuple[dict, dict]:
    """({id: candidate}, {id: [reference]}) for every record of the split.

    splits: the evaluation's SplitCache (shares the split's loading); None = a fresh one.
    """
    if encoder.captioner is None:
        raise ValueError("a captioning evaluation needs a caption decoder; model.kind two_tower has none")
    images, records = split_cache(encoder, splits).load(split_path)
    refs = {}
    for r in records:  # checked before the (slow) decoding
        if field not in r["captions"]:
            raise ValueError(f"{split_path}: record {r['id']!r} has no caption {field!r} (the entry's field)")
        refs[r["id"]] = [r["captions"][field]]
    cond = [r["alt_text"] for r in records] if encoder.captioner.needs_condition else None
    texts = encoder.captioner.caption(encoder.params, images, cond, cfg)
    return {r["id"]: t for r, t in zip(records, texts)}, refs


def evaluate(encoder, split_path: str, field: str = "short", max_length: int = 32, method: str = "greedy",
             beam_size: int = 4, splits: SplitCache | None = None) -> dict[str, float]:
    """{"cider_d", "bleu4"} of the model's captions of the split's images."""
    cfg = DecodeConfig(method=method, max_length=max_length, beam_size=beam_size)
    candidates, references = generate(encoder, split_path, field, cfg, splits)
    return caption_scores(candidates, references)


def train_captions(config, field: str) -> list[str]:
    """captions[field] of every training record of `config` (the most-frequent baseline's pool)."""
    return [decode_example(d, where=path)["captions"][field]
            for path in resolve_paths(config.data.train_paths) for d in read_records(path)]


# An `evals` entry of type "captioning" (CoCa / CLIPS): the split (records with captions), the reference
# field, and the decoding (max_length ≤ model.decoder.context_length, method greedy | beam, beam_size).
# The same options are what `bigvl caption` / `recaption` read of a run (bigvl.inference.run_config.captioning_entry).
OPTIONS = dict(CAPTIONING_DEFAULTS)


def run(encoder, entry, splits: SplitCache, batch_size: int) -> dict[str, float]:
    """The entry's CIDEr-D and BLEU-4 (bigvl.evaluators.common.EVALUATORS)."""
    return evaluate(encoder, entry.split, entry.field, entry.max_length, entry.method, entry.beam_size, splits)


def check(entry, config) -> None:
    """The decode length fits the decoder's context (captioners)."""
    if config.model.kind != "two_tower" and entry.max_length > config.model.decoder.context_length:
        raise ValueError(f"max_length {entry.max_length} exceeds model.decoder.context_length "
                         f"{config.model.decoder.context_length}")
