"""The wide/tall world variant (bigvl/data/world/aspect_variant.py): same records and texts, images at
the drawn aspect, shapes that keep their form in the image and lose it when squashed to a square
(a circle's silhouette: about as wide as tall in the variant image, W/H times wider once squashed)."""
import io
import json

import numpy as np
from PIL import Image

from bigvl.data.records import decode_example, read_records
from bigvl.data.world.aspect_variant import build_aspect_world, canvas_size
from bigvl.data.world.scene import COLOURS


def _silhouette_aspect(pixels: np.ndarray, colour) -> float:
    """Width / height of the pixels within 60 of `colour` (the object's bounding box)."""
    mask = np.abs(pixels.astype(int) - np.asarray(colour)).max(axis=-1) < 60
    ys, xs = np.nonzero(mask)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


def test_variant_keeps_records_and_shapes(tiny_world, tmp_path):
    out = build_aspect_world(tiny_world, tmp_path / "aspect", seed=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variant"]["aspects"] == [1.0, 2.0, 0.5] and (out / "tokenizer.model").is_file()
    base = [decode_example(d) for d in read_records(str(tiny_world / "zeroshot.array_record"))]
    variant = [decode_example(d) for d in read_records(str(out / "zeroshot.array_record"))]
    assert [r["id"] for r in variant] == [r["id"] for r in base]
    assert [r["captions"] for r in variant] == [r["captions"] for r in base]
    seen, circles = set(), 0
    for record in variant:
        height, width = record["extras"]["aspect"]
        seen.add(width / height)
        image = Image.open(io.BytesIO(record["image"])).convert("RGB")
        assert image.size == (width, height) and min(height, width) == manifest["image_size"]
        obj = record["extras"]["scene"]["objects"][0]
        if obj["shape"] != "circle" or width == height:
            continue
        circles += 1
        colour = COLOURS[obj["colour"]]
        assert abs(_silhouette_aspect(np.asarray(image), colour) - 1) < 0.2  # a circle in the image
        side = min(height, width)
        squashed = np.asarray(image.resize((side, side), Image.BILINEAR))
        np.testing.assert_allclose(_silhouette_aspect(squashed, colour), height / width, rtol=0.25)
    assert seen == {1.0, 2.0, 0.5} and circles >= 2
    assert canvas_size(64, 2.0) == (64, 128) and canvas_size(64, 0.5) == (128, 64)
