"""Adds a trained teacher's image and text embeddings to training shards (MobileCLIP's reinforced data).

    python data/add_teacher_embeddings.py --teacher workdirs/teacher \
        --in '~/.cache/bigvl/synthetic_world_seed0/train-*.array_record' --out /tmp/reinforced

Writes one shard per input shard (same names) into --out; train a student on them with
`loss.distill_weight` > 0 (e.g. `configs/recipe_demo.py:distill`). See bigvl/inference/teacher_embeddings.py.
"""
from __future__ import annotations

import json
import time

from bigvl.cli import command_parser
from bigvl.data.pipeline import resolve_paths
from bigvl.inference.teacher_embeddings import add_teacher_embeddings
from bigvl.parallel.process import setup_process


def main(argv=None) -> int:
    p = command_parser("add_teacher_embeddings", __doc__)
    p.add_argument("--teacher", required=True, help="workdir of a trained two-tower run")
    p.add_argument("--in", dest="inputs", required=True, nargs="+", help="shard files or globs")
    p.add_argument("--out", required=True, help="directory for the reinforced shards")
    p.add_argument("--fields", default="", help="texts to encode, e.g. alt,short (default: all)")
    p.add_argument("--windowed", action="store_true",
                   help="texts longer than the teacher's context: the mean of overlapping windows (TULIP), not cut")
    args = p.parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    start = time.time()
    stats = add_teacher_embeddings(args.teacher, resolve_paths(args.inputs, "--in"), args.out,
                                   [f for f in args.fields.split(",") if f] or None, windowed=args.windowed)
    print(json.dumps({**stats, "seconds": round(time.time() - start, 1), "out": args.out}))
    return 0

