"""Published CLIP / SigLIP checkpoints in and out of bigvl (= `bigvl convert`).

    python -m bigvl.convert import --from open_clip --in ViT-B-16.safetensors --model-config ViT-B-16.json \\
        --tokenizer bpe_simple_vocab_16e6.txt.gz --out workdirs/b16
    python -m bigvl.convert import --from hf --in clip-vit-base-patch16/ --out workdirs/hf_b16
    python -m bigvl.convert import --from big_vision --in webli_en_b16_224.npz --tokenizer spiece.model \\
        --out workdirs/siglip
    python -m bigvl.convert export --workdir workdirs/run --to hf --out exported/hf_model
    python -m bigvl.convert export --workdir workdirs/run --to open_clip --out exported/oc_model  # local-dir: layout

An imported workdir loads with `bigvl.load`, evaluates with `python -m bigvl.evaluate --workdir`
and fine-tunes with `--config.init.workdir`; `flags` prints the overrides that give a training
config its architecture, tokenizer and init (Long-CLIP from OpenAI's B/16):

    python -m bigvl.main --config configs/recipe_b16.py:long --workdir /mnt/runs/long_b16 \\
        $(python -m bigvl.convert flags --workdir workdirs/b16 --skip model.text.context_length)

`--set model.KEY=VALUE` overrides what the import inferred (e.g. model.activation for an open_clip
state dict given without its model JSON).
"""
from __future__ import annotations

import json
import sys

from bigvl.cli import command_parser
from bigvl.convert.export import TARGETS, export_workdir
from bigvl.convert.importer import SOURCES, default_tokenizer, import_checkpoint
from bigvl.convert.workdir import finetune_flags, write_workdir
from bigvl.data.tokenizer import Tokenizer
from bigvl.parallel.process import setup_process


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: want model.KEY=VALUE")
        out[key] = value
    return out


def _bos_from_sentencepiece(config, path: str) -> None:
    """A sentencepiece tokenizer names its BOS id (bigvl's own: 2), which no state dict records: the
    towers never read it, but fine-tuning checks it against the tokenizer (check_model_text)."""
    bos = Tokenizer(path).bos_id
    if 0 <= bos < config.model.text.vocab_size:
        config.model.text.bos_id = bos


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("convert", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="a published checkpoint → a bigvl workdir")
    imp.add_argument("--from", dest="source", required=True, choices=SOURCES)
    imp.add_argument("--in", dest="path", required=True,
                     help="open_clip: a state dict file or its hub directory; hf: a save_pretrained "
                     "directory; big_vision: an .npz")
    imp.add_argument("--out", required=True, help="the bigvl workdir to write")
    imp.add_argument("--tokenizer", default=None, help="tokenizer file: sentencepiece .model, CLIP BPE "
                     "vocabulary .txt.gz or HF tokenizer.json (HF directories: found there by default)")
    imp.add_argument("--model-config", default=None, help="open_clip's model JSON (heads, quick_gelu, pooling)")
    imp.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE")
    exp = sub.add_parser("export", help="a bigvl two-tower workdir → HF transformers or open_clip")
    exp.add_argument("--workdir", required=True)
    exp.add_argument("--to", required=True, choices=TARGETS)
    exp.add_argument("--out", required=True, help="a directory (hf: config.json + model.safetensors; open_clip: "
                     "open_clip_config.json + open_clip_model.safetensors)")
    exp.add_argument("--step", type=int, default=None)
    exp.add_argument("--hf_tokenizer_name", default="", help="open_clip: an HF hub tokenizer equal to the run's "
                     "(text_cfg.hf_tokenizer_name); needed unless the run tokenises with open_clip's own CLIP BPE")
    flg = sub.add_parser("flags", help="--config.* overrides to fine-tune from a converted workdir")
    flg.add_argument("--workdir", required=True)
    flg.add_argument("--skip", action="append", default=[], metavar="model.KEY", help="keys left to the config")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    setup_process()  # before JAX starts its backend
    try:
        if args.command == "import":
            config, params = import_checkpoint(args.source, args.path, args.model_config, _parse_sets(args.set))
            tokenizer = args.tokenizer or default_tokenizer(args.source, args.path)
            sets = _parse_sets(args.set)
            if tokenizer and tokenizer.endswith(".model") and "model.text.bos_id" not in sets:
                _bos_from_sentencepiece(config, tokenizer)
            write_workdir(args.out, config, params, tokenizer)
            print(json.dumps({"workdir": args.out, "params": int(sum(p.size for p in params.values())),
                              "tokenizer": config.data.tokenizer}))
            if not tokenizer:
                where = (f"no tokenizer found in {args.path!r} (tokenizer.json or spiece.model)"
                         if args.source == "hf" else "no tokenizer given")
                print(f"note: {where}: images encode, texts need one: import into a new --out with --tokenizer FILE "
                      "or set data.tokenizer in the workdir's config.json", file=sys.stderr)
        elif args.command == "flags":
            print(" ".join(finetune_flags(args.workdir, args.skip)))
        else:
            files = export_workdir(args.workdir, args.to, args.out, args.step, args.hf_tokenizer_name)
            print(json.dumps({"exported": files}))
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
