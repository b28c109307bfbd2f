"""Captioning quality of CoCa / CLIPS: CIDEr-D and BLEU-4 of decoded captions on a held-out split.

References are each record's captions[field] (the demo world's retrieval split holds
`short` and `long`); CLIPS captions an image given its alt-text (the record's
`alt_text`). Texts are lowercased and split into letter/digit runs before scoring
(`bigvl.evaluators.caption_metrics.tokenize`; pycocoevalcap's PTB tokenizer needs Java).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter

from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.evaluators.caption_metrics import caption_scores
from bigvl.evaluators.splits import SplitCache, split_cache
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.run import load_run
from bigvl.parallel.host_memory import reuse_freed_host_memory


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
        raise ValueError("evals.captioning is set but the model has no caption decoder (model.kind two_tower)")
    images, records = split_cache(encoder, splits).load(split_path)
    refs = {}
    for r in records:  # checked before the (slow) decoding
        if field not in r["captions"]:
            raise ValueError(f"{split_path}: record {r['id']!r} has no caption {field!r} (evals.captioning_field)")
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


def _train_captions(config, field: str) -> list[str]:
    return [decode_example(d, where=path)["captions"][field]
            for path in resolve_paths(config.data.train_paths) for d in read_records(path)]


def main(argv=None) -> dict:
    """`python -m bigvl.evaluators.captioning --workdir RUN [--method beam] [--samples 5]`: the run's
    CIDEr-D / BLEU-4 on its `evals.captioning` split, beside the most-frequent-training-caption
    baseline, with sample captions next to their references. Prints one JSON line last."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--method", default="greedy", choices=("greedy", "beam"))
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args(argv)
    reuse_freed_host_memory()  # before JAX starts its backend, as bigvl.main runs
    run = load_run(args.workdir)  # the config as the run saved it (this stage does not know the full schema)
    ev = run.config.evals
    split, field = ev.get("captioning", ""), ev.get("captioning_field", "short")  # the schema's defaults
    if not split:
        raise SystemExit(f"error: {args.workdir}: its config sets no evals.captioning split")
    cfg = DecodeConfig(method=args.method, max_length=ev.captioning_max_length, beam_size=args.beam_size)
    candidates, references = generate(run.encoder, split, field, cfg)
    result = {"workdir": args.workdir, "method": args.method, "field": field,
              **caption_scores(candidates, references)}
    baseline = most_frequent_baseline(_train_captions(run.config, field), references)
    result.update({f"baseline_{k}": v for k, v in baseline.items()})
    for key in list(candidates)[:args.samples]:
        print(f"{key}\n  model:     {candidates[key]}\n  reference: {references[key][0]}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
