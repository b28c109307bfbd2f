"""What a batch's captions need: how many nats of the contrastive loss shape (or colour) can earn.

    python -m experiments.caption_information [--variants baseline,shape_world,...] [--batch 64]

For each world-study variant (experiments/world_study.py) this draws the variant's train
texts (alt-text, true short caption, or the mix, as its `data.caption_strategy` says) and
computes the lowest InfoNCE a model can reach on random batches when it reads a text fully,
when it is blind to the shape words, and when it is blind to the colour words. A model blind
to shape embeds "a red circle" and "a red square" alike, so the best it can do for an image
is to spread its probability over every text of the batch that matches up to shape:

    floor(key) = mean over batches, over examples i, of log #{j in batch: key(text_j) = key(text_i)}

(both directions of the symmetric loss give the same figure). The gap between the
shape-blind floor and the full floor is the most that learning shape can lower the loss:
where it is a few hundredths of a nat, as in the demo world, nothing pushes either tower to
learn shape. It is a floor, not a prediction: alt-texts that do not describe the image
keep a real model above it.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
from typing import Callable, Sequence

import numpy as np

from bigvl.data.world import world_params
from bigvl.data.world.examples import generate_split
from bigvl.data.world.scene import COLOURS, SHAPES
from experiments.world_study import VARIANTS, study_config

SHAPE_WORDS = re.compile(r"\b(" + "|".join(SHAPES) + r")s?\b")
COLOUR_WORDS = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")


def normalise(text: str) -> str:
    """Lower case, words only: "Red-Circle-Clipart.png" and "red circle clipart png" are one text."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def shape_blind(text: str) -> str:
    """The text with every shape word replaced by one placeholder."""
    return SHAPE_WORDS.sub("<shape>", normalise(text))


def colour_blind(text: str) -> str:
    """The text with every colour word replaced by one placeholder."""
    return COLOUR_WORDS.sub("<colour>", normalise(text))


def batch_floor(keys: Sequence[str], batch_size: int, num_batches: int = 200, seed: int = 0) -> float:
    """Mean over `num_batches` random batches (drawn without replacement) of
    mean_i log #{j: keys[j] == keys[i]}: the InfoNCE of a model that tells texts apart by key only."""
    if batch_size > len(keys):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(keys)} texts drawn")
    keys = np.asarray(keys, dtype=object)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(num_batches):
        batch = keys[rng.choice(len(keys), batch_size, replace=False)]
        counts = collections.Counter(batch)
        means.append(np.mean([np.log(counts[k]) for k in batch]))
    return float(np.mean(means))


def train_texts(world_params, strategy: str, count: int, mix_p: float = 0.5, seed: int = 0) -> list[str]:
    """`count` train texts of the world as the caption strategy `alt`, `recap` or `mix` picks them."""
    if strategy not in ("alt", "recap", "mix"):
        raise ValueError(f"caption strategy {strategy!r}: this tool knows alt, recap and mix")
    rng = np.random.default_rng(seed)
    texts = []
    for example, _ in generate_split("train", world_params, count):
        use_caption = strategy == "recap" or (strategy == "mix" and rng.random() < mix_p)
        texts.append(example["captions"]["short"] if use_caption else example["alt_text"])
    return texts


def floors(texts: Sequence[str], batch_size: int, num_batches: int = 200) -> dict[str, float]:
    """{"full", "shape_blind", "colour_blind"} floors (nats) and the gaps shape / colour can earn."""
    keyed: dict[str, Callable[[str], str]] = {"full": normalise, "shape_blind": shape_blind,
                                              "colour_blind": colour_blind}
    out = {name: batch_floor([key(t) for t in texts], batch_size, num_batches) for name, key in keyed.items()}
    out["shape_gap"] = out["shape_blind"] - out["full"]
    out["colour_gap"] = out["colour_blind"] - out["full"]
    return out


def variant_world_and_strategy(name: str) -> tuple[object, str, float]:
    """The world parameters, caption strategy and mix_p of a world-study variant."""
    config = study_config(VARIANTS[name][1], steps=1, cache="/nonexistent")
    world = config.world.to_dict()
    for key in ("dir", "build"):
        world.pop(key)
    return world_params(**world), config.data.caption_strategy, float(config.data.mix_p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.caption_information",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="baseline,recap_only,easy_32px,easy_32px_recap,"
                                              "easy_32px_one_object_recap,shape_world,shape_world_recap")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--examples", type=int, default=4000, help="train texts drawn per variant")
    parser.add_argument("--out", default="", help="also write OUT.md and OUT.json")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: {unknown[0]!r} is not one of {list(VARIANTS)}")
    rows = []
    for name in names:
        params, strategy, mix_p = variant_world_and_strategy(name)
        result = floors(train_texts(params, strategy, args.examples, mix_p), args.batch)
        rows.append({"variant": name, "strategy": strategy, "batch": args.batch, **result})
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    lines = ["| variant | texts | floor | shape-blind floor | shape can earn | colour-blind floor | colour can earn |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['strategy']} | {r['full']:.3f} | {r['shape_blind']:.3f} | {r['shape_gap']:.3f} "
              f"| {r['colour_blind']:.3f} | {r['colour_gap']:.3f} |" for r in rows]
    lines.append(f"\nNats of InfoNCE at batch {args.batch}, {args.examples} train texts per variant, 200 batches "
                 f"(`python -m experiments.caption_information`).")
    table = "\n".join(lines)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".md", "w") as f:
            f.write(table + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
