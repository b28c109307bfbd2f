"""Recaptions a corpus with a trained bigvl captioner (CoCa, or CLIPS given the alt-text).

    python data/recaption.py --captioner workdirs/coca_demo \
        --in '~/.cache/bigvl/synthetic_world_seed0/train-*.array_record' --out /tmp/recaptioned --field gen

Writes one shard per input shard (same names) into --out, each record with captions[--field]
added, and --out/recaption_manifest.json (counts, empty / degenerate captions, length
percentiles, wall time, captions/s, decode settings, captioner). Resumable: rerun the same
command after an interruption; a rerun into the same --out with other options (captioner,
field, cond, decode settings, seed, only_missing) exits 2 with one line naming them and
writes nothing. See bigvl/inference/recaption.py.
"""
from __future__ import annotations

import json
import sys

from bigvl.cli import command_parser
from bigvl.data.pipeline import resolve_paths
from bigvl.inference.decoding import METHODS, DecodeConfig, length_prefix_ids
from bigvl.inference.recaption import CONDITIONS, MANIFEST, recaption
from bigvl.inference.run import load_run
from bigvl.inference.run_config import decode_length
from bigvl.inference.shard_transform import OptionsMismatch
from bigvl.parallel import distributed
from bigvl.parallel.process import setup_process


def main(argv=None) -> int:
    p = command_parser("recaption", __doc__)
    p.add_argument("--captioner", required=True, help="workdir of a trained CoCa / CLIPS run")
    p.add_argument("--in", dest="inputs", required=True, nargs="+", help="shard files or globs")
    p.add_argument("--out", required=True, help="directory for the recaptioned shards")
    p.add_argument("--field", required=True, help="caption name to write, e.g. gen")
    p.add_argument("--cond", choices=CONDITIONS, default=None,
                   help="condition text (CLIPS: alt, the default for CLIPS runs; CoCa takes none)")
    p.add_argument("--method", choices=METHODS, default="greedy")
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--top_p", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max_length", type=int, default=0,
                   help="0 = the run's evals.captioning.max_length (at most its decoder context)")
    p.add_argument("--guidance", type=float, default=0.0,
                   help="classifier-free guidance weight w (a captioner trained with model.decoder.image_drop); 0 = off")
    p.add_argument("--length", type=int, default=0,
                   help="captions of N words (a captioner trained with data.target_length_prefix); 0 = its own choice")
    p.add_argument("--batch_size", type=int, default=256, help="images per decode call (rounded up to the devices)")
    p.add_argument("--seed", type=int, default=0, help="sampling: each record's key is (seed, record id)")
    p.add_argument("--only_missing", default="",
                   help="decode only records without this caption; the others get captions[--field] = it")
    p.add_argument("--no_progress", action="store_true")
    args = p.parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    distributed.maybe_initialize()  # one of several processes (a pod): each takes its own shards
    run = load_run(args.captioner)
    cfg = DecodeConfig(method=args.method, max_length=args.max_length or decode_length(run.config),
                       beam_size=args.beam_size, top_p=args.top_p, temperature=args.temperature,
                       guidance=args.guidance,
                       prefix=length_prefix_ids(run.encoder.captioner, args.length) if args.length else ())
    try:
        manifest = recaption(run, resolve_paths(args.inputs, "--in"), args.out, args.field, cfg, seed=args.seed,
                             batch_size=args.batch_size, only_missing=args.only_missing, cond=args.cond,
                             progress=not args.no_progress, workdir=args.captioner)
    except OptionsMismatch as e:  # a restart with other options: one line, nothing written
        print(f"recaption: {e}", file=sys.stderr)
        return 2
    keys = ("records", "decoded", "copied", "faulty", "empty", "degenerate", "wall_seconds", "captions_per_second")
    print(json.dumps({**{k: manifest[k] for k in keys}, "manifest": f"{args.out}/{MANIFEST}"}))
    return 0

