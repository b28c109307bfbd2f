"""The commands a user runs: `bigvl` (or `python -m bigvl`) lists them, `bigvl NAME ARGS` runs one.

Each command is a module with `main(argv) -> int` whose parser comes from `command_parser`
(its purpose line, example and flags); `bigvl NAME` and the module's own entry point
(`python -m bigvl.main`, `python data/build_shards.py`, ...) run the same function.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from dataclasses import dataclass
from typing import Sequence

from bigvl import __version__


@dataclass(frozen=True)
class Command:
    """A user-facing command: the module whose `main(argv)` runs it, one line of purpose, an example."""
    module: str
    purpose: str
    example: str
    script: str = ""  # also runnable from a clone as this script


COMMANDS: dict[str, Command] = {
    "train": Command(
        "bigvl.main", "Train a model and evaluate it periodically; resumes from --workdir (= python -m bigvl.main).",
        "bigvl train --config demo --workdir workdirs/demo"),
    "evaluate": Command(
        "bigvl.evaluate", "Evaluate a run's checkpoint on its config's evals, or on published benchmark suites.",
        "bigvl evaluate --workdir workdirs/demo --suite wds/imagenet1k --data_dir /data/clip_benchmark"),
    "caption": Command(
        "bigvl.cli.caption", "Caption a captioner run's held-out split and score it (CIDEr-D, BLEU-4).",
        "bigvl caption --workdir workdirs/coca_demo --method beam"),
    "wise_ft": Command(
        "bigvl.cli.wise_ft", "WiSE-FT: evaluate (1 - a)*zero-shot + a*fine-tuned params over a sweep of a.",
        "bigvl wise_ft --zero_shot workdirs/demo --fine_tuned workdirs/demo_ft --out wise/"),
    "plan": Command(
        "bigvl.plan", "Compile the train step for a TPU topology without a TPU: memory per chip, collectives.",
        "bigvl plan --config clip_b16 --topology v5e:2x2"),
    "convert": Command(
        "bigvl.convert.__main__", "Published CLIP / SigLIP checkpoints in and out (open_clip, HF, big_vision).",
        "bigvl convert import --from hf --in clip-vit-base-patch16/ --out workdirs/hf_b16"),
    "build_shards": Command(
        "bigvl.cli.build_shards", "Downloaded images (img2dataset) + caption tables -> ArrayRecord shards.",
        "bigvl build_shards --images '/data/dl/*.tar' --captions recap.parquet --join url "
        "--caption recap=re_caption --out /data/shards", "data/build_shards.py"),
    "train_tokenizer": Command(
        "bigvl.cli.train_tokenizer", "Train a sentencepiece tokenizer on the captions of shards.",
        "bigvl train_tokenizer --shards '/data/shards/train-*.array_record' --vocab_size 32000 --out tok.model",
        "data/train_tokenizer.py"),
    "make_synthetic_world": Command(
        "bigvl.cli.make_synthetic_world", "Build the built-in synthetic recaptioned world (shards, splits, tokenizer).",
        "bigvl make_synthetic_world --out /tmp/world --num-train 2000", "data/make_synthetic_world.py"),
    "recaption": Command(
        "bigvl.cli.recaption", "Write a captioner run's captions into shards (the recaptioning loop).",
        "bigvl recaption --captioner workdirs/coca_demo --in 'shards/*.array_record' --out recap/ --field gen",
        "data/recaption.py"),
    "score_captions": Command(
        "bigvl.cli.score_captions", "Score every text of shards with a CLIP/SigLIP run (image-text similarity).",
        "bigvl score_captions --model workdirs/demo --in 'shards/*.array_record' --out scored/",
        "data/score_captions.py"),
    "curate": Command(
        "bigvl.cli.curate", "Curate shards: MetaCLIP balancing, top-q score filter, image de-duplication (Beam).",
        "bigvl curate --in 'shards/*.array_record' --out curated/ --metadata entries.txt --keep_top 0.7 --dedup near",
        "data/curate.py"),
    "add_teacher_embeddings": Command(
        "bigvl.cli.add_teacher_embeddings", "Add a teacher run's embeddings to shards (MobileCLIP-style distillation).",
        "bigvl add_teacher_embeddings --teacher workdirs/demo --in 'shards/*.array_record' --out reinforced/",
        "data/add_teacher_embeddings.py"),
}


def command_parser(name: str, doc: str | None = None) -> argparse.ArgumentParser:
    """The parser of command `name`: its purpose line and example in `--help`, then `doc` (the
    module docstring's detail), prog `bigvl NAME`."""
    command = COMMANDS[name]
    epilog = f"example:\n  {command.example}"
    if command.script:
        epilog += f"\n\nfrom a clone also: python {command.script} ..."
    if doc:
        epilog += "\n\n" + doc.strip()
    return argparse.ArgumentParser(prog=f"bigvl {name}", description=command.purpose, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def usage() -> str:
    """The listing `bigvl` prints: every command with its purpose and an example."""
    width = max(map(len, COMMANDS))
    lines = [f"bigvl {__version__}: pretraining vision-language models on recaptioned data", "",
             "usage: bigvl COMMAND [ARGS]   (or python -m bigvl COMMAND); bigvl COMMAND --help for its flags", ""]
    for title, data_tool in (("commands:", False), ("data preparation (also python data/NAME.py from a clone):", True)):
        lines.append(title)
        for name, command in COMMANDS.items():
            if bool(command.script) == data_tool:
                lines += [f"  {name:<{width}}  {command.purpose}", f"  {'':<{width}}  e.g. {command.example}"]
        lines.append("")
    lines += ["configs shipped with the package (--config NAME[:ARGS], or a path to your own .py):",
              *config_lines(), "",
              "from a clone: python -m benchmarks.NAME (speed, memory), python -m experiments.NAME (studies)"]
    return "\n".join(lines)


def config_lines() -> list[str]:
    """One line per shipped config: its name and the first line of its docstring."""
    from bigvl.config import list_configs  # the config schema imports every stage: only for the listing
    configs = list_configs()
    width = max((len(name) for name, _ in configs), default=0)
    return [f"  {name:<{width}}  {summary}" for name, summary in configs]


def main(argv: Sequence[str] | None = None) -> int:
    """`bigvl [COMMAND [ARGS]]`: no command (or -h/--help) prints the listing; an unknown one is
    exit status 2 with the nearest name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        near = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"bigvl: unknown command {name!r}{hint} (bigvl --help lists them)", file=sys.stderr)
        return 2
    result = importlib.import_module(COMMANDS[name].module).main(rest)
    return result if isinstance(result, int) else 0
