"""A variant of a built world with wide and tall images, for NaFlex.

Every record of every split of the base world (train shards, zeroshot, retrieval,
hard_negatives) is drawn again from its stored scene (`extras["scene"]`) on a canvas of
aspect W/H drawn per record from `aspects` (default square 1:1, wide 2:1, tall 1:2; the
short side is the base world's image_size). Positions stay fractions of the width and
height, radii fractions of the short side, so shapes keep their form in the image; resizing
a wide or tall image to a square (the square recipe) squashes them: a circle becomes an
ellipse, a square a rectangle. Rotation, shade and texture phase are redrawn from
(seed, record id) since the base records do not store them. Texts, ids, tokenizer and class
names are the base world's; `extras["aspect"]` = [H, W]. Retrieval's pointing regions keep
the base world's numbers (fractions of a square side): the pointing game does not apply here.

    python -c "from bigvl.data.world.aspect_variant import build_aspect_world as b; b('BASE', 'OUT')"
"""
from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

from bigvl.data.records import decode_example, encode_example, read_records, write_records
from bigvl.data.world.render import encode_jpeg, render_scene
from bigvl.data.world.scene import Scene, SceneObject, _rotation

ASPECTS = (1.0, 2.0, 0.5)  # W / H: square, wide, tall
SPLITS = ("zeroshot", "retrieval", "hard_negatives")


def canvas_size(image_size: int, aspect: float) -> tuple[int, int]:
    """(H, W) with short side `image_size` and W / H = aspect (rounded to pixels)."""
    if aspect >= 1:
        return image_size, int(round(image_size * aspect))
    return int(round(image_size / aspect)), image_size


def record_rng(seed: int, record_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, 36, zlib.crc32(record_id.encode())])


def scene_of(extras: dict, rng: np.random.Generator, rotate: bool = True) -> Scene:
    """The stored scene, with rotation (when the base world rotates), shade and texture period/phase
    redrawn from `rng`."""
    objects = tuple(SceneObject(o["colour"], o["shape"], o["size"], o["x"], o["y"], o["radius"],
                                _rotation(rng, o["shape"], rotate), tuple(int(v) for v in rng.integers(-12, 13, size=3)))
                    for o in extras["objects"])
    return Scene(objects, extras["background"], extras["texture"], float(rng.uniform(0.1, 0.16)),
                 float(rng.uniform(0.0, 1.0)))


def redraw(data: bytes, image_size: int, aspects, seed: int, rotate: bool = True, quality: int = 95) -> bytes:
    """One base record's bytes → the variant record (its image redrawn at an aspect from `aspects`)."""
    record = decode_example(data)
    rng = record_rng(seed, record["id"])
    height, width = canvas_size(image_size, float(aspects[int(rng.integers(len(aspects)))]))
    image = render_scene(scene_of(record["extras"]["scene"], rng, rotate), height, width)
    record["image"] = encode_jpeg(image, quality)
    record["extras"]["aspect"] = [height, width]
    return encode_example(record)


def build_aspect_world(base_dir: str | os.PathLike, out_dir: str | os.PathLike, aspects=ASPECTS, seed: int = 0) -> Path:
    """Writes the variant of the world in `base_dir` into `out_dir` (module docstring); returns out_dir.
    A finished variant (OUT/variant.json with the same parameters) is reused."""
    base, out = Path(base_dir), Path(out_dir)
    params = {"base": str(base.absolute()), "aspects": [float(a) for a in aspects], "seed": seed}
    done = out / "variant.json"
    if done.is_file() and json.loads(done.read_text()).get("params") == params:
        return out
    if not aspects or any(a <= 0 for a in aspects):
        raise ValueError(f"build_aspect_world: aspects must be positive W/H ratios, got {list(aspects)}")
    manifest = json.loads((base / "manifest.json").read_text())
    size, rotate = int(manifest["image_size"]), bool(manifest["params"].get("scene", {}).get("rotation", True))
    out.mkdir(parents=True, exist_ok=True)
    files = manifest["files"]
    for name in list(files["train"]) + [files[split] for split in SPLITS]:
        write_records(str(out / name), [redraw(data, size, aspects, seed, rotate) for data in read_records(str(base / name))])
    for name in os.listdir(base):
        if name.startswith("tokenizer.") or name == files["zeroshot_classes"]:
            shutil.copyfile(base / name, out / name)
    manifest["variant"] = {"kind": "aspect", **params}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    done.write_text(json.dumps({"params": params}, indent=1))
    return out
