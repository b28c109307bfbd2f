"""Stores the CLIP score (raw cosine of image and text embeddings) of each text of every record.

    python data/score_captions.py --model workdirs/demo \
        --in '/tmp/recaptioned/train-*.array_record' --out /tmp/scored --fields alt,gen

Writes one shard per input shard (same names) into --out with extras["clip_score"] =
{field: cosine} added, and --out/score_manifest.json (mean score per field). Train with
`--config.data.min_caption_score=T` to fall back to the alt-text where the chosen synthetic
caption scores below T. See bigvl/inference/caption_scores.py.
"""
from __future__ import annotations

import json
import sys

from bigvl.cli import command_parser
from bigvl.data.pipeline import resolve_paths
from bigvl.inference.caption_scores import score_captions
from bigvl.inference.run import load_run
from bigvl.inference.shard_transform import OptionsMismatch
from bigvl.parallel import distributed
from bigvl.parallel.process import setup_process


def main(argv=None) -> int:
    p = command_parser("score_captions", __doc__)
    p.add_argument("--model", required=True, help="workdir of a trained two-tower (CLIP / SigLIP) run")
    p.add_argument("--in", dest="inputs", required=True, nargs="+", help="shard files or globs")
    p.add_argument("--out", required=True, help="directory for the scored shards")
    p.add_argument("--fields", default="", help="texts to score, e.g. alt,short,gen (default: all)")
    args = p.parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    distributed.maybe_initialize()  # one of several processes (a pod): each takes its own shards
    run = load_run(args.model)
    try:
        manifest = score_captions(run, resolve_paths(args.inputs, "--in"), args.out,
                                  [f for f in args.fields.split(",") if f] or None, workdir=args.model)
    except OptionsMismatch as e:  # a restart with other options: one line, nothing written
        print(f"score_captions: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("records", "faulty", "texts", "mean_score", "wall_seconds")}))
    return 0

