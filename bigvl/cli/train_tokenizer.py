"""A sentencepiece tokenizer for converted shards: trained on their alt-texts and captions.

    python data/train_tokenizer.py --shards '/data/recap_bigvl/train-*.array_record' \
        --vocab_size 32000 --out /data/recap_bigvl/tokenizer.model

Samples up to --max_records records at random over all shards (seeded) and trains on the
alt-text and every caption field of each (--fields alt,short to keep some). Ids: pad 0,
unk 1, bos 2, eos 3 (bigvl.data.tokenizer.train_tokenizer); set model.text.vocab_size to at
least the printed `pieces`. An existing sentencepiece model with an EOS piece works as
well: set data.tokenizer to it and skip this step.
"""
from __future__ import annotations

import json
import sys
import time

from bigvl.cli import command_parser
from bigvl.data.ingest.texts import sample_texts
from bigvl.data.pipeline import resolve_paths
from bigvl.data.tokenizer import Tokenizer, train_tokenizer


def main(argv=None) -> int:
    p = command_parser("train_tokenizer", __doc__)
    p.add_argument("--shards", required=True, nargs="+", help="ArrayRecord files or globs")
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--out", required=True, help="FILE.model (FILE.vocab is written beside it)")
    p.add_argument("--max_records", type=int, default=200_000)
    p.add_argument("--fields", default="", help="comma-separated caption names, alt = the alt-text (default: all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.out.endswith(".model"):
        p.error("--out must end in .model")
    if args.vocab_size < 8 or args.max_records < 1:
        p.error("--vocab_size must be ≥ 8 and --max_records ≥ 1")
    start = time.time()
    try:
        paths = resolve_paths(args.shards, "--shards")
        texts, stats = sample_texts(paths, args.max_records, args.seed,
                                    [f for f in args.fields.split(",") if f] or None)
        if not texts:
            raise ValueError(f"no text in the {stats['records_read']} records read (fields {args.fields or 'all'})")
        model = train_tokenizer(texts, args.out[:-len(".model")], args.vocab_size)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"train_tokenizer: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps({**stats, "pieces": Tokenizer(model).vocab_size, "out": str(model),
                      "seconds": round(time.time() - start, 1)}))
    return 0

