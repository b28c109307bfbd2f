"""A world with what curation is for: a long tail of classes, spam alt-texts and near-duplicate images.

    build_curation_world(base_dir, out_dir, seed=0)   # base_dir: a built world (build_world)

From a built world's train records: (1) a long tail: the classes (colour and shape) rank
r = 0..C-1 in a seeded order; with `tail="all_objects"` (default) a record is kept with probability
min over its objects of (r + 1)^-alpha, so a tail class is rare as any object of any image, not only
as the first one (`tail="first_object"`: the first object's class alone decides, and tail shapes
stay common as second objects); (2) web alt-texts: with `p_wrong_attribute` set, each kept
record's alt-text is drawn again from its scene (`sample_alt_text`, the base world's other rates)
with that rate of texts naming a wrong colour or shape, so that head images' mislabelled texts do
not swamp the tail entries' counts; (3) spam: a fraction `p_spam` of the kept records get a spam
alt-text: `spam="head"` (default) web boilerplate naming no class or, with probability
`p_spam_head`, one head class (rank < `head`) as popular search terms, not necessarily in the image;
`spam="stuffed"` keyword-stuffs 4–6 random class names; (4) near-duplicates: a fraction
`p_duplicate` of the records of the head classes (first object's rank < `head`) are copied 1–3
times, re-encoded at another JPEG quality and brightness (same texts, ids "<id>/dup<k>"). The
held-out splits, class names and tokenizer are copied unchanged (balanced over classes).
Deterministic given the seed; OUT/variant.json says what was planted (records per class, spam
count, duplicate ids).
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from bigvl.data.records import decode_example, encode_example, read_records, write_records
from bigvl.data.world.alt_text import AltTextNoise, alt_text_string, sample_alt_text
from bigvl.data.world.examples import class_names
from bigvl.data.world.scene import Scene, SceneObject

SPAM_WORDS = ("free download", "best hd wallpapers", "cheap", "buy now", "top 10", "clipart png", "sale")


def _rank_of_class(seed: int) -> dict[str, int]:
    names = class_names()
    order = np.random.default_rng([seed, 38, 0]).permutation(len(names))
    return {names[c]: r for r, c in enumerate(order)}


def _spam(rng: np.random.Generator, kind: str, head_names: list[str], p_head: float) -> str:
    """A spam alt-text (it opens with a SPAM_WORDS phrase): `kind` "stuffed" names 4–6 random classes,
    "head" names one of `head_names` with probability `p_head`, else no class."""
    names = class_names()
    if kind == "stuffed":
        picked = [names[i] for i in rng.choice(len(names), size=int(rng.integers(4, 7)), replace=False)]
    else:
        picked = [head_names[int(rng.integers(len(head_names)))]] if rng.random() < p_head else []
    words = rng.choice(len(SPAM_WORDS), size=2, replace=False)
    return " ".join([SPAM_WORDS[words[0]], *picked, SPAM_WORDS[words[1]]])


def _scene(extras: dict) -> Scene:
    """The Scene of a record's extras["scene"] as far as `sample_alt_text` reads it (colour, shape, size)."""
    objects = tuple(SceneObject(o["colour"], o["shape"], o["size"], o["x"], o["y"], o["radius"], 0.0, (0, 0, 0))
                    for o in extras["objects"])
    return Scene(objects, extras["background"], extras["texture"], 0.0, 0.0)


def _near_copy(image: bytes, rng: np.random.Generator) -> bytes:
    with Image.open(io.BytesIO(image)) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.int16)
    pixels = np.clip(pixels + int(rng.integers(-8, 9)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(75, 91)))
    return buffer.getvalue()


def build_curation_world(base_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0, alpha: float = 1.0,
                         p_spam: float = 0.2, p_duplicate: float = 0.3, head: int = 5, num_shards: int = 4,
                         tail: str = "all_objects", spam: str = "head", p_spam_head: float = 0.5,
                         p_wrong_attribute: float | None = 0.1) -> Path:
    """Writes the variant of the world in `base_dir` into `out_dir` (module docstring); returns out_dir.
    A finished variant (OUT/variant.json with the same parameters) is reused."""
    if tail not in ("all_objects", "first_object") or spam not in ("head", "stuffed"):
        raise ValueError(f"build_curation_world: tail={tail!r} (all_objects|first_object), spam={spam!r} (head|stuffed)")
    base, out = Path(base_dir), Path(out_dir)
    params = {"base": str(base), "seed": seed, "alpha": alpha, "p_spam": p_spam, "p_duplicate": p_duplicate,
              "head": head, "num_shards": num_shards, "tail": tail, "spam": spam, "p_spam_head": p_spam_head,
              "p_wrong_attribute": p_wrong_attribute}
    done = out / "variant.json"
    if done.is_file() and json.loads(done.read_text()).get("params") == params:
        return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((base / "manifest.json").read_text())
    rank = _rank_of_class(seed)
    head_names = sorted(rank, key=rank.get)[:head]
    noise = None if p_wrong_attribute is None else AltTextNoise(p_wrong_attribute=p_wrong_attribute)
    rng = np.random.default_rng([seed, 38, 1])
    records, per_class, spam_count, duplicates = [], {name: 0 for name in rank}, 0, []
    per_class_objects = {name: 0 for name in rank}
    for name in manifest["files"]["train"]:
        for data in read_records(str(base / name)):
            record = decode_example(data)
            objects = [f"{o['colour']} {o['shape']}" for o in record["extras"]["scene"]["objects"]]
            cls = objects[0]
            ranks = [rank[c] for c in (objects if tail == "all_objects" else objects[:1])]
            if rng.random() >= (max(ranks) + 1.0) ** -alpha:
                continue
            per_class[cls] += 1
            for c in objects:
                per_class_objects[c] += 1
            if noise is not None:
                record["alt_text"] = alt_text_string(sample_alt_text(_scene(record["extras"]["scene"]), rng, noise))
            if rng.random() < p_spam:
                record["alt_text"], spam_count = _spam(rng, spam, head_names, p_spam_head), spam_count + 1
            records.append(encode_example(record))
            if rank[cls] < head and rng.random() < p_duplicate:
                for k in range(int(rng.integers(1, 4))):
                    copy = {**record, "id": f"{record['id']}/dup{k}", "image": _near_copy(record["image"], rng)}
                    records.append(encode_example(copy))
                    duplicates.append(copy["id"])
    order = rng.permutation(len(records))  # copies spread over the shards
    names = [f"train-{i:05d}-of-{num_shards:05d}.array_record" for i in range(num_shards)]
    for name, part in zip(names, np.array_split(order, num_shards)):
        write_records(str(out / name), [records[i] for i in part])
    for key, name in manifest["files"].items():
        if key != "train":
            shutil.copy(base / name, out / name)
    shutil.copy(base / "tokenizer.vocab", out / "tokenizer.vocab")
    (out / "manifest.json").write_text(json.dumps({**manifest, "files": {**manifest["files"], "train": names},
                                                   "counts": {**manifest["counts"], "train": len(records)}}, indent=1))
    done.write_text(json.dumps({"params": params, "records": len(records), "per_class": per_class,
                                "per_class_objects": per_class_objects, "class_rank": rank, "spam": spam_count,
                                "near_duplicates": duplicates}, indent=1))
    return out
