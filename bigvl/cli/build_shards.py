"""Downloaded images + recaption tables → bigvl ArrayRecord shards and DIR/manifest.json.

    python data/build_shards.py --images '/data/recap/*.tar' --out /data/recap_bigvl \
        --captions Recap-DataComp-1B.parquet --join url --caption recap=re_caption --caption org=org_caption \
        --captions dreamlip.csv --join url --caption long=longSV_captions --caption short=shortSV_captions \
        --workers 8 --max_side 512

--images: img2dataset webdataset tars ({key}.jpg/.txt/.json, with their {shard}.parquet for
failed downloads), img2dataset parquet output (key, jpg, txt, ...) or folders of images with
an optional .txt beside each; files, globs or folders, repeatable. Each --captions TABLE
(parquet, jsonl, csv, tsv) is followed by its own --join COLUMN[=FIELD] (the table column
matched against the sample's `key` or a field of its .json: url, uid, sha256 ...) and
--caption NAME=COLUMN options (a list column gives NAME_0 … NAME_k). --alt: the alt-text:
`txt` (img2dataset's caption, default), a .json field, or a caption NAME. --datacompdr GLOB
joins MobileCLIP's DataCompDR tars on uid: captions syn_0 … syn_4 and the teacher embeddings
that `loss.distill_weight` trains on (bigvl/data/ingest/datacompdr.py).

The conversion is one Apache Beam pipeline (pip install 'bigvl[beam]'; bigvl/data/ingest/pipeline.py):
here Beam's in-process DirectRunner with --workers processes; at scale the same command with
Beam's runner flags, e.g. --runner DataflowRunner --project P --region R --temp_location
gs://B/tmp --setup_file ./pyproject.toml and gs:// paths (docs/guides/own_data.md). Runner flags
are checked before submission; a flag neither this command nor Beam knows is an error.
Caption tables are joined by key, never loaded whole in one process.

Deterministic (same inputs → the same shard bytes for any --workers or runner) and resumable: rerun
the same command after a crash and only the missing units are written. Bad input is skipped and
counted in the manifest, or stops the run with one line before any work. A table that joins
under 1 % of the images (0 included) is reported on stderr in one line with a key of each side,
and the run goes on (a small table may cover few images); CSV/TSV join columns are read as text,
so zero-padded keys (img2dataset's 000000123) join. Library:
bigvl/data/ingest/. Then: python data/train_tokenizer.py --shards 'OUT/train-*.array_record' ...
"""
from __future__ import annotations

import argparse
import json
import sys

from bigvl.cli import command_parser
from bigvl.data.ingest.beam_io import RunnerError, check_runner, pipeline_options, quiet_beam_logs
from bigvl.data.ingest.convert import ConvertError, ConvertOptions
from bigvl.data.ingest.datacompdr import dr_patterns
from bigvl.data.ingest.inputs import InputError, find_units
from bigvl.data.ingest.table_rows import plan_table
from bigvl.data.ingest.tables import TableError, TableSpec
from bigvl.parallel.process import setup_process


class _TableOption(argparse.Action):
    """--captions starts a table group; --join and --caption attach to the latest one."""

    def __call__(self, parser, namespace, value, option_string=None):
        groups = getattr(namespace, "tables", None) or []
        if option_string == "--captions":
            groups.append({"path": value, "join": "", "captions": []})
        elif not groups:
            parser.error(f"{option_string} {value}: comes before any --captions TABLE")
        elif option_string == "--join":
            groups[-1]["join"] = value
        else:
            groups[-1]["captions"].append(value)
        namespace.tables = groups


def parse_args(argv):
    p = command_parser("build_shards", __doc__)
    p.add_argument("--images", action="append", required=True, help="tar/parquet files, globs or folders")
    p.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    p.add_argument("--captions", action=_TableOption, dest="tables", metavar="TABLE",
                   help="a caption table (parquet, jsonl, csv, tsv; LaCLIP: CSV+rewrites.txt+...)")
    p.add_argument("--join", action=_TableOption, dest="tables", metavar="COLUMN[=FIELD]",
                   help="join of the last --captions: its column [= the sample's key or .json field]")
    p.add_argument("--caption", action=_TableOption, dest="tables", metavar="NAME=COLUMN",
                   help="a caption of the last --captions (repeatable)")
    p.add_argument("--datacompdr", action="append", default=[], metavar="GLOB",
                   help="MobileCLIP DataCompDR tars (files or globs): syn_0..4 captions + teacher embeddings, on uid")
    p.add_argument("--dr_teacher", type=int, default=0, help="DataCompDR teacher: 0 ViT-L-14 openai, 1 datacomp_xl")
    p.add_argument("--dr_augmentation", type=int, default=0, help="DataCompDR image_emb row to store")
    p.add_argument("--dr_logit_scale", type=float, default=100.0, help="the teacher's logit scale (exp)")
    p.add_argument("--alt", default="txt", help="alt-text: txt | a .json field | a caption name")
    p.add_argument("--shard_size", type=int, default=10000, help="records per output file at most")
    p.add_argument("--workers", type=int, default=1, help="DirectRunner processes (other runners: their own flags)")
    p.add_argument("--max_side", type=int, default=0, help="resize images whose longer side exceeds this (0: keep)")
    p.add_argument("--tokenizer", default="", help="sentencepiece model: also report caption lengths in tokens")
    args, args.beam_args = p.parse_known_args(argv)
    args.tables = args.tables or []
    if args.shard_size < 1 or args.workers < 1 or args.max_side < 0:
        p.error("--shard_size and --workers must be ≥ 1, --max_side ≥ 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_process("%(asctime)s %(message)s")
    quiet_beam_logs()
    try:
        specs = [TableSpec.parse(t["path"], t["join"], t["captions"]) for t in args.tables]
        names = [name for spec in specs for name, _ in spec.captions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise TableError(f"--caption names {repeated} are given twice; each caption needs its own name")
        units = find_units(args.images, args.shard_size)
        for t, spec in enumerate(specs):  # schemas only: a bad table or column in one line, before Beam starts
            plan_table(t, spec)
        try:
            options = pipeline_options(args.beam_args, args.workers)
        except ImportError as e:
            raise RunnerError(f"build_shards runs on Apache Beam: pip install 'bigvl[beam]' ({e})") from None
        check_runner(options, args.out, [*args.images, *(s.path for s in specs), *args.datacompdr])
        from bigvl.data.ingest.pipeline import DataCompDRSource, plan_build, run_build
        datacompdr = None
        if args.datacompdr:
            datacompdr = DataCompDRSource(tuple(dr_patterns(args.datacompdr)), args.dr_teacher,
                                          args.dr_augmentation, args.dr_logit_scale)
        convert = ConvertOptions(out=args.out, shard_size=args.shard_size, max_side=args.max_side, alt=args.alt)
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        plan = plan_build(units, specs, datacompdr, convert, tokenizer=args.tokenizer, log=log)  # checks before work
        manifest = run_build(plan, options, log=log)
    except (InputError, TableError, ConvertError, RunnerError, FileNotFoundError, ValueError) as e:
        print(f"build_shards: {e}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in ("samples_read", "written", "wall_s", "records_per_s", "workers", "runner")}
    summary.update(bad=manifest["bad"]["count"], failed_downloads=manifest["failed_downloads"]["count"],
                   shards=len(manifest["shards"]), out=args.out)
    print(json.dumps(summary))
    return 0
