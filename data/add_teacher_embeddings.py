"""Adds a trained teacher's image and text embeddings to training shards (MobileCLIP's reinforced data).

    python data/add_teacher_embeddings.py --teacher workdirs/teacher \
        --in '~/.cache/bigvl/synthetic_world_seed0/train-*.array_record' --out /tmp/reinforced

Writes one shard per input shard (same names) into --out; train a student on them with
`loss.distill_weight` > 0 (e.g. `configs/recipe_demo.py:distill`). See bigvl/tools/teacher_embeddings.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

from bigvl.data.pipeline import resolve_paths
from bigvl.tools.teacher_embeddings import add_teacher_embeddings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="workdir of a trained two-tower run")
    p.add_argument("--in", dest="inputs", required=True, nargs="+", help="shard files or globs")
    p.add_argument("--out", required=True, help="directory for the reinforced shards")
    p.add_argument("--fields", default="", help="texts to encode, e.g. alt,short (default: all)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.time()
    stats = add_teacher_embeddings(args.teacher, resolve_paths(args.inputs, "--in"), args.out,
                                   [f for f in args.fields.split(",") if f] or None)
    print(json.dumps({**stats, "seconds": round(time.time() - start, 1), "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
