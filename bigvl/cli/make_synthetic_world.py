"""Builds the synthetic recaptioned world (see `bigvl.data.world`).

    python data/make_synthetic_world.py --out /tmp/world [--seed 0] [--num-train 20000]
"""
from __future__ import annotations

import argparse
import json
import time

from bigvl.cli import command_parser
from bigvl.data import world as synthetic_world
from bigvl.parallel.process import setup_process


def parse_args(argv=None) -> argparse.Namespace:
    defaults = synthetic_world.WorldParams()
    noise = defaults.noise
    p = command_parser("make_synthetic_world", __doc__)
    p.add_argument("--out", required=True, help="directory to write the world into (replaced)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--num-train", type=int, default=defaults.num_train)
    p.add_argument("--num-train-shards", type=int, default=defaults.num_train_shards)
    p.add_argument("--num-zeroshot", type=int, default=defaults.num_zeroshot)
    p.add_argument("--num-retrieval", type=int, default=defaults.num_retrieval)
    p.add_argument("--num-hard-negatives", type=int, default=defaults.num_hard_negatives)
    p.add_argument("--num-rewrites", type=int, default=defaults.num_rewrites)
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    p.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    p.add_argument("--p-boilerplate", type=float, default=noise.p_boilerplate)
    p.add_argument("--p-wrong-attribute", type=float, default=noise.p_wrong_attribute)
    p.add_argument("--p-one-object", type=float, default=noise.p_one_object)
    p.add_argument("--if-missing", action="store_true",
                   help="keep an existing world built with the same parameters")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    kwargs = dict(seed=args.seed, image_size=args.image_size, num_train=args.num_train,
                  num_train_shards=args.num_train_shards, num_zeroshot=args.num_zeroshot,
                  num_retrieval=args.num_retrieval, num_hard_negatives=args.num_hard_negatives,
                  num_rewrites=args.num_rewrites, vocab_size=args.vocab_size, jpeg_quality=args.jpeg_quality,
                  noise=synthetic_world.AltTextNoise(args.p_boilerplate, args.p_wrong_attribute, args.p_one_object))
    start = time.time()
    build = synthetic_world.ensure_world if args.if_missing else synthetic_world.build_world
    out = build(args.out, **kwargs)
    manifest = synthetic_world.read_manifest(out)
    print(f"synthetic world in {out} ({time.time() - start:.1f} s)")
    print(json.dumps(manifest["counts"]))
    return 0

