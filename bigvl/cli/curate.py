"""Curates training shards before training: MetaCLIP balancing, top-q score filtering, image de-duplication.

    python data/curate.py --in '/data/shards/train-*.array_record' --out /data/curated \\
        --metadata bigvl/data/curate/world_metadata.txt --balance_t 20000 \\
        --keep_top 0.7 --score_field alt --dedup near --against '/data/eval/*.array_record'

Writes one shard per input shard (same names, the kept records unchanged and in order) and
OUT/manifest.json (records kept and dropped by reason, MetaCLIP's entry counts and the kept
counts per entry, the score threshold). Runs as an Apache Beam pipeline on the in-process
DirectRunner (--workers N: N processes). A killed run started again with the same options
writes only the missing shards; other options stop it with one line. Scores come from
`bigvl score_captions` (extras.clip_score). See docs/guides/curation.md and bigvl/data/curate/.
"""
from __future__ import annotations

import json
import sys

from bigvl.cli import command_parser
from bigvl.data.curate.metaclip import read_metadata
from bigvl.data.curate.options import DEDUP_MODES, CurateOptions
from bigvl.data.ingest.beam_io import quiet_beam_logs
from bigvl.data.pipeline import resolve_paths
from bigvl.inference.shard_transform import OptionsMismatch, check_options
from bigvl.parallel.process import setup_process


def main(argv=None) -> int:
    p = command_parser("curate", __doc__)
    p.add_argument("--in", dest="inputs", required=True, nargs="+", help="training shard files or globs")
    p.add_argument("--out", required=True, help="directory for the curated shards")
    p.add_argument("--metadata", default="", help="MetaCLIP metadata list, one entry a line (default: no balancing)")
    p.add_argument("--balance_t", type=float, default=20000, help="MetaCLIP's t: the cap on pairs per entry")
    p.add_argument("--match_captions", action="store_true", help="match the captions too, not only the alt-text")
    p.add_argument("--case_sensitive", action="store_true", help="match case-sensitively, as MetaCLIP does")
    p.add_argument("--keep_top", type=float, default=1.0, help="keep this fraction of pairs, by score (1 = no filter)")
    p.add_argument("--score_field", default="alt", help="which text's extras.clip_score the filter ranks by")
    p.add_argument("--dedup", default="none", choices=DEDUP_MODES, help="image de-duplication")
    p.add_argument("--max_distance", type=int, default=4, help="near duplicates: perceptual-hash bits that may differ")
    p.add_argument("--against", nargs="*", default=[], help="evaluation shards: training images duplicating them go")
    p.add_argument("--seed", type=int, default=0, help="seed of the balancing draws")
    p.add_argument("--workers", type=int, default=1, help="DirectRunner processes (1: in this process)")
    args = p.parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    quiet_beam_logs()
    from bigvl.data.curate.pipeline import STATE, curate  # apache-beam: imported after quiet_beam_logs
    try:
        options = CurateOptions(entries=tuple(read_metadata(args.metadata)) if args.metadata else (),
                                balance_t=args.balance_t if args.metadata else 0.0, match_captions=args.match_captions,
                                case_sensitive=args.case_sensitive,
                                keep_fraction=args.keep_top, score_field=args.score_field, dedup=args.dedup,
                                max_distance=args.max_distance, seed=args.seed)
        paths = resolve_paths(args.inputs, "--in")
        against = resolve_paths(args.against, "--against") if args.against else []
        check_options(args.out, STATE.lstrip("."), {**options.to_json(), "against": against})
        manifest = curate(paths, args.out, options, against, workers=args.workers)
    except (OptionsMismatch, ValueError, FileNotFoundError) as e:
        print(f"curate: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("records", "kept", "dropped", "score_threshold", "wall_seconds")}))
    return 0
