"""A world with what curation is for: a long tail of classes, spam alt-texts and near-duplicate images.

    build_curation_world(base_dir, out_dir, seed=0)   # base_dir: a built world (build_world)

From a built world's train records: (1) a long tail: the class of a record (colour and shape of its
first object) ranks r = 0..C-1 in a seeded order and the record is kept with probability
(r + 1)^-alpha, so a few classes hold most images; (2) spam: a fraction `p_spam` of the kept
records get a keyword-stuffed alt-text naming 4–6 random classes (none need be in the image)
around web boilerplate; (3) near-duplicates: a fraction `p_duplicate` of the records of the head
classes (rank < `head`) are copied 1–3 times, re-encoded at another JPEG quality and brightness
(same texts, ids "<id>/dup<k>"). The held-out splits, class names and tokenizer are copied
unchanged (balanced over classes). Deterministic given the seed; OUT/variant.json says what was
planted (records per class, spam count, duplicate ids).
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
from bigvl.data.world.examples import class_names

SPAM_WORDS = ("free download", "best hd wallpapers", "cheap", "buy now", "top 10", "clipart png", "sale")


def _rank_of_class(seed: int) -> dict[str, int]:
    names = class_names()
    order = np.random.default_rng([seed, 38, 0]).permutation(len(names))
    return {names[c]: r for r, c in enumerate(order)}


def _spam(rng: np.random.Generator) -> str:
    names = class_names()
    picked = [names[i] for i in rng.choice(len(names), size=int(rng.integers(4, 7)), replace=False)]
    words = rng.choice(len(SPAM_WORDS), size=2, replace=False)
    return f"{SPAM_WORDS[words[0]]} {' '.join(picked)} {SPAM_WORDS[words[1]]}"


def _near_copy(image: bytes, rng: np.random.Generator) -> bytes:
    with Image.open(io.BytesIO(image)) as im:
        pixels = np.asarray(im.convert("RGB")).astype(np.int16)
    pixels = np.clip(pixels + int(rng.integers(-8, 9)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(75, 91)))
    return buffer.getvalue()


def build_curation_world(base_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0, alpha: float = 1.0,
                         p_spam: float = 0.2, p_duplicate: float = 0.3, head: int = 5, num_shards: int = 4) -> Path:
    """Writes the variant of the world in `base_dir` into `out_dir` (module docstring); returns out_dir.
    A finished variant (OUT/variant.json with the same parameters) is reused."""
    base, out = Path(base_dir), Path(out_dir)
    params = {"base": str(base), "seed": seed, "alpha": alpha, "p_spam": p_spam, "p_duplicate": p_duplicate,
              "head": head, "num_shards": num_shards}
    done = out / "variant.json"
    if done.is_file() and json.loads(done.read_text()).get("params") == params:
        return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((base / "manifest.json").read_text())
    rank = _rank_of_class(seed)
    rng = np.random.default_rng([seed, 38, 1])
    records, per_class, spam, duplicates = [], {name: 0 for name in rank}, 0, []
    for name in manifest["files"]["train"]:
        for data in read_records(str(base / name)):
            record = decode_example(data)
            first = record["extras"]["scene"]["objects"][0]
            cls = f"{first['colour']} {first['shape']}"
            if rng.random() >= (rank[cls] + 1.0) ** -alpha:
                continue
            per_class[cls] += 1
            if rng.random() < p_spam:
                record["alt_text"], spam = _spam(rng), spam + 1
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
                                "class_rank": rank, "spam": spam, "near_duplicates": duplicates}, indent=1))
    return out
