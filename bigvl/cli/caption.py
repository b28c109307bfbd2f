"""A captioner run's CIDEr-D and BLEU-4 on its held-out split (its `evals.captioning` entry), beside the
most-frequent-training-caption baseline, with sample captions next to their references; prints
one JSON line last. The scoring is bigvl/evaluators/captioning.py's, as inside training.
"""
from __future__ import annotations

import json

from bigvl.cli import command_parser
from bigvl.evaluators.caption_metrics import caption_scores
from bigvl.evaluators.captioning import generate, most_frequent_baseline, train_captions
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.run import load_run
from bigvl.inference.run_config import captioning_entry
from bigvl.parallel.process import setup_process


def main(argv=None) -> int:
    """`bigvl caption --workdir RUN [--method beam] [--samples 5]`; returns the exit status."""
    parser = command_parser("caption", __doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--method", default="greedy", choices=("greedy", "beam"))
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args(argv)
    setup_process()
    run = load_run(args.workdir)  # the config as the run saved it (this stage does not know the full schema)
    entry = captioning_entry(run.config)  # its evals entry of type captioning (old run dirs: converted on read)
    split, field = entry.split, entry.field
    if not split:
        raise SystemExit(f"error: {args.workdir}: its config sets no evals.captioning split")
    cfg = DecodeConfig(method=args.method, max_length=entry.max_length, beam_size=args.beam_size)
    candidates, references = generate(run.encoder, split, field, cfg)
    result = {"workdir": args.workdir, "method": args.method, "field": field,
              **caption_scores(candidates, references)}
    baseline = most_frequent_baseline(train_captions(run.config, field), references)
    result.update({f"baseline_{k}": v for k, v in baseline.items()})
    for key in list(candidates)[:args.samples]:
        print(f"{key}\n  model:     {candidates[key]}\n  reference: {references[key][0]}")
    print(json.dumps(result))
    return 0
