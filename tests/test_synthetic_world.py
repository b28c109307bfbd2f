"""The synthetic world: deterministic, captions true to the pixels, negatives false, noise as asked.

Captions are parsed here with our own regexes and checked against the decoded JPEG pixels
(colours named by this file's own palette) and against the object coordinates stored in
each record, never against the generator's own caption or relation code.
"""
import collections
import dataclasses
import io
import json
import math
import re

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image

from bigvl.data import world as sw
from bigvl.data.records import decode_example
from bigvl.data.tokenizer import Tokenizer
from bigvl.data.world import build as world_build
from bigvl.models import model_config_defaults

# what the colour words mean, written independently of the generator's palette
PALETTE = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "yellow": (240, 200, 40),
           "purple": (140, 60, 180), "orange": (240, 140, 30)}
BACKGROUND_PALETTE = {"white": (235, 235, 235), "grey": (130, 130, 130), "beige": (225, 208, 178),
                      "black": (35, 35, 35)}
COLOUR_WORDS = "red|green|blue|yellow|purple|orange"
SHAPE_WORDS = "circle|square|triangle|star|ring"
NOUN = re.compile(rf"\b(?:a|an) ({COLOUR_WORDS}) ({SHAPE_WORDS})\b")
BARE_NOUN = re.compile(rf"\b({COLOUR_WORDS}) ({SHAPE_WORDS})\b")
RELATION = {"to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right",
            "above": "above", "below": "below", "beneath": "below"}
BACKGROUND = re.compile(r"on an? (plain|striped|dotted|checkered) (white|grey|beige|black) background$")
SMALL = dict(num_train=200, num_train_shards=2, num_zeroshot=60, num_retrieval=40, num_hard_negatives=40,
             vocab_size=600)


def read_split(path):
    reader = ArrayRecordReader(str(path))
    try:
        return [decode_example(b, where=f"{path}#{i}") for i, b in enumerate(reader.read_all())]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return sw.build_world(tmp_path_factory.mktemp("world") / "w", seed=0, **SMALL)


@pytest.fixture(scope="module")
def splits(world):
    manifest = json.loads((world / "manifest.json").read_text())
    train = [r for name in manifest["files"]["train"] for r in read_split(world / name)]
    return {"train": train, **{s: read_split(world / f"{s}.array_record")
                               for s in ("zeroshot", "retrieval", "hard_negatives")}}


def pixels(record):
    return np.asarray(Image.open(io.BytesIO(record["image"])).convert("RGB"), dtype=np.float32)


def nearest(rgb, palette):
    return min(palette, key=lambda name: np.linalg.norm(np.asarray(palette[name], np.float32) - rgb))


def object_colour(image, obj):
    """Mean colour of the pixels well inside the object (for a ring: on its band)."""
    size = image.shape[0]
    ys, xs = np.mgrid[0:size, 0:size]
    r = obj["radius"] * size
    d = np.hypot(xs + 0.5 - obj["x"] * size, ys + 0.5 - obj["y"] * size) / r
    inside = (d > 0.65) & (d < 0.9) if obj["shape"] == "ring" else d < 0.4
    return image[inside].mean(axis=0)


def parse_short(text):
    """(named [(colour, shape)], relation or None, background (texture, colour) or None)."""
    nouns = list(NOUN.finditer(text))
    relation = None
    if len(nouns) >= 2:
        relation = RELATION.get(text[nouns[0].end():nouns[1].start()].strip())
    background = BACKGROUND.search(text)
    return [m.groups() for m in nouns], relation, background.groups() if background else None


def find(scene, colour, shape):
    matches = [o for o in scene["objects"] if (o["colour"], o["shape"]) == (colour, shape)]
    assert len(matches) <= 1
    return matches[0] if matches else None


def stated_relation_holds(a, b, relation):
    return {"left": a["x"] < b["x"], "right": a["x"] > b["x"],
            "above": a["y"] < b["y"], "below": a["y"] > b["y"]}[relation]


def scene_key(scene, size):
    return (scene["background"], scene["texture"],
            tuple(sorted((o["colour"], o["shape"], round(o["x"] * size), round(o["y"] * size))
                         for o in scene["objects"])))


# ----------------------------------------------------------------------------- files
def test_files_counts_and_ids(world, splits):
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 200, "train_captioned": 200, "zeroshot": 60, "retrieval": 40, "hard_negatives": 40}
    assert manifest["files"]["train"] == ["train-00000-of-00002.array_record", "train-00001-of-00002.array_record"]
    assert manifest["params"]["noise"] == dataclasses.asdict(sw.AltTextNoise())  # what it was built with
    for name, records in splits.items():
        assert len(records) == manifest["counts"][name]
        assert [r["id"] for r in records] == [f"{name}/{i:06d}" for i in range(len(records))]
        for r in records:
            assert {"short", "long", "rewrite_0", "rewrite_1"} <= set(r["captions"])
            assert r["alt_text"].strip() and all(t.strip() for t in r["captions"].values())
            assert pixels(r).shape == (64, 64, 3)
    assert not list(world.parent.glob(".w.*")), "temporary build directories left behind"


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    again = sw.build_world(tmp_path / "again", seed=0, **SMALL)
    names = sorted(p.name for p in world.iterdir() if p.name != "manifest.json")
    assert names == sorted(p.name for p in again.iterdir() if p.name != "manifest.json")
    for name in names:
        assert (world / name).read_bytes() == (again / name).read_bytes(), name
    other = sw.build_world(tmp_path / "other", seed=1, **SMALL)
    for name in ("train-00000-of-00002.array_record", "zeroshot.array_record", "hard_negatives.array_record"):
        assert (world / name).read_bytes() != (other / name).read_bytes()


# ----------------------------------------------------------------------------- captions
def test_short_captions_true_to_pixels(splits):
    relations_checked = 0
    for record in splits["train"] + splits["retrieval"]:
        scene, image = record["extras"]["scene"], pixels(record)
        named, relation, background = parse_short(record["captions"]["short"])
        assert sorted(named) == sorted((o["colour"], o["shape"]) for o in scene["objects"]), record["id"]
        for colour, shape in named:
            assert nearest(object_colour(image, find(scene, colour, shape)), PALETTE) == colour, record["id"]
        if len(named) >= 2:
            assert relation is not None, record["captions"]["short"]
            a, b = find(scene, *named[0]), find(scene, *named[1])
            assert stated_relation_holds(a, b, relation), record["id"]
            # and from the pixels alone when both colours occur once
            colours = [o["colour"] for o in scene["objects"]]
            if colours.count(a["colour"]) == colours.count(b["colour"]) == 1:
                ca, cb = (colour_centroid(image, o["colour"]) for o in (a, b))
                assert stated_relation_holds({"x": ca[0], "y": ca[1]}, {"x": cb[0], "y": cb[1]}, relation)
                relations_checked += 1
        if background is not None:
            texture, colour = background
            assert (texture, colour) == (scene["texture"], scene["background"])
            assert nearest(image[:2, :2].reshape(-1, 3).mean(0), BACKGROUND_PALETTE) == colour
    assert relations_checked > 50


def colour_centroid(image, colour):
    palette = {**PALETTE, **{f"bg_{k}": v for k, v in BACKGROUND_PALETTE.items()}}
    names = list(palette)
    dist = np.linalg.norm(image[:, :, None, :] - np.asarray([palette[n] for n in names], np.float32), axis=-1)
    mask = (dist.argmin(-1) == names.index(colour)) & (dist.min(-1) < 60)
    ys, xs = np.nonzero(mask)
    return xs.mean() / image.shape[1], ys.mean() / image.shape[0]


def test_long_captions_describe_every_object(splits):
    for record in splits["train"]:
        scene, text = record["extras"]["scene"], record["captions"]["long"]
        assert text.endswith(".") and "  " not in text
        sentences = text[:-1].split(". ")
        assert 4 <= len(sentences) <= 8, text
        for o in scene["objects"]:
            about = [s for s in sentences if f"{o['colour']} {o['shape']}" in s and o["size"] in s]
            assert about, (o, text)
        mentioned = {m.groups() for m in BARE_NOUN.finditer(text)}
        assert mentioned == {(o["colour"], o["shape"]) for o in scene["objects"]}
        assert scene["background"] in text
        for s in sentences:  # "The red circle is to the left of the blue square"
            pair = list(BARE_NOUN.finditer(s))
            words = [w for w in ("left of", "right of", "above", "below") if w in s]
            if len(pair) == 2 and words:
                a, b = find(scene, *pair[0].groups()), find(scene, *pair[1].groups())
                assert stated_relation_holds(a, b, words[0].split()[0]), s
            if "top" in s and len(pair) == 1:
                assert find(scene, *pair[0].groups())["y"] < 0.5, s
            if "left" in s and len(pair) == 1:
                assert find(scene, *pair[0].groups())["x"] < 0.5, s


def test_objects_stay_inside_crop_safe_area(splits):
    for record in splits["train"]:
        for o in record["extras"]["scene"]["objects"]:
            assert 0.2 <= o["x"] <= 0.8 and 0.2 <= o["y"] <= 0.8
            assert min(o["x"], o["y"], 1 - o["x"], 1 - o["y"]) - 1.1 * o["radius"] >= 0.049


def test_shape_areas_match_geometry():
    """Rendered areas against closed-form areas (radius r): a check of the shape masks."""
    size, r = 256, 0.2
    expected = {"circle": math.pi, "ring": math.pi * (1 - 0.55 ** 2), "square": 1.56 ** 2,
                "triangle": 3 * math.sqrt(3) / 4 * 1.1 ** 2, "star": 5 * 1.1 * 0.5 * math.sin(math.pi / 5)}
    for shape, area in expected.items():
        obj = sw.SceneObject("red", shape, "large", 0.5, 0.5, r, 0.0, (0, 0, 0))
        scene = sw.Scene((obj,), "white", "plain", 0.1, 0.0)
        image = sw.render_scene(scene, size).astype(np.float32)
        covered = (236 - image[..., 1]).sum() / (236 - 40)  # green channel: 236 background, 40 red
        assert covered / (r * size) ** 2 == pytest.approx(area, rel=0.02), shape


# ----------------------------------------------------------------------------- held-out splits
def test_hard_negatives_are_false(splits):
    kinds = collections.Counter()
    for record in splits["hard_negatives"]:
        scene, extras = record["extras"]["scene"], record["extras"]
        assert extras["positive"] == record["captions"]["short"]
        assert len(scene["objects"]) >= 2
        assert len(extras["negatives"]) == len(extras["negative_kinds"]) >= 1
        actual = sorted((o["colour"], o["shape"]) for o in scene["objects"])
        for negative, kind in zip(extras["negatives"], extras["negative_kinds"]):
            kinds[kind] += 1
            assert negative != extras["positive"]
            named, relation, _ = parse_short(negative)
            if sorted(named) == actual:  # same objects: the stated relation must be false
                a, b = find(scene, *named[0]), find(scene, *named[1])
                assert not stated_relation_holds(a, b, relation), (negative, scene)
    assert kinds["swap_relation"] == len(splits["hard_negatives"])
    assert kinds["swap_colour"] > 0.8 * len(splits["hard_negatives"])
    assert set(kinds) <= {"swap_colour", "swap_shape", "swap_relation", "replace_colour"}


def test_zeroshot_balanced_and_labels_match_pixels(world, splits):
    classes = json.loads((world / "zeroshot_classes.json").read_text())
    # every colour × shape this file's own word lists name, once each
    everything = {f"{c} {s}" for c in COLOUR_WORDS.split("|") for s in SHAPE_WORDS.split("|")}
    assert sorted(classes["classnames"]) == sorted(everything)
    assert len(classes["templates"]) >= 4 and all("{}" in t for t in classes["templates"])
    labels = [r["extras"]["label"] for r in splits["zeroshot"]]
    assert collections.Counter(labels) == {c: SMALL["num_zeroshot"] // len(everything) for c in range(len(everything))}
    for record in splits["zeroshot"]:
        (obj,) = record["extras"]["scene"]["objects"]
        colour, shape = classes["classnames"][record["extras"]["label"]].split()
        assert (obj["colour"], obj["shape"]) == (colour, shape)
        assert nearest(object_colour(pixels(record), obj), PALETTE) == colour


def test_heldout_scenes_not_in_train(splits):
    train = {scene_key(r["extras"]["scene"], 64) for r in splits["train"]}
    for name in ("zeroshot", "retrieval", "hard_negatives"):
        held_out = [scene_key(r["extras"]["scene"], 64) for r in splits[name]]
        assert not train & set(held_out), name
    assert {r["image"] for r in splits["train"]}.isdisjoint(
        r["image"] for name in ("zeroshot", "retrieval", "hard_negatives") for r in splits[name])


def test_heldout_never_repeats_a_train_scene_even_when_asked():
    params = sw.world_params(num_train=10, num_retrieval=3)
    first = [sw.scene_key(s, 64) for _, s in sw.generate_split("retrieval", params, 3)]
    redrawn = [sw.scene_key(s, 64) for _, s in sw.generate_split("retrieval", params, 3, avoid={first[1]})]
    assert redrawn[0] == first[0] and redrawn[2] == first[2] and redrawn[1] != first[1]


def test_retrieval_regions_match_the_scene(splits):
    """extras.regions (the pointing targets): one disc per object whose colour+shape is unique,
    centred on the object, of radius 1.1 × its radius (the disc every shape fits in)."""
    regions_seen = 0
    for record in splits["retrieval"]:
        objects = record["extras"]["scene"]["objects"]
        counts = collections.Counter((o["colour"], o["shape"]) for o in objects)
        unique = [o for o in objects if counts[(o["colour"], o["shape"])] == 1]
        regions = record["extras"]["regions"]
        assert len(regions) == len(unique) >= 2, record["id"]
        for region, obj in zip(regions, unique):
            assert NOUN.fullmatch(region["text"]).groups() == (obj["colour"], obj["shape"]), region
            assert (region["x"], region["y"]) == (obj["x"], obj["y"])
            assert region["radius"] == pytest.approx(1.1 * obj["radius"], abs=1e-9)
        regions_seen += len(regions)
    assert regions_seen > 2 * len(splits["retrieval"])
    for name in ("train", "zeroshot", "hard_negatives"):  # held-out retrieval records only
        assert not any("regions" in r["extras"] for r in splits[name]), name


def test_regions_leave_out_objects_whose_colour_and_shape_repeat():
    def obj(colour, shape, x, y):
        return sw.SceneObject(colour, shape, "small", x, y, 0.09, 0.0, (0, 0, 0))
    scene = sw.Scene((obj("red", "circle", 0.25, 0.25), obj("red", "circle", 0.75, 0.75),
                      obj("orange", "star", 0.75, 0.25), obj("red", "square", 0.25, 0.75)), "white", "plain", 0.1, 0)
    regions = sw.pointing_regions(scene)
    assert [(r["text"], r["x"], r["y"]) for r in regions] == [("an orange star", 0.75, 0.25),
                                                               ("a red square", 0.25, 0.75)]
    assert all(r["radius"] == pytest.approx(0.099) for r in regions)


# ----------------------------------------------------------------------------- alt-text
def classify_alt(text, scene):
    """'boilerplate' (no object words), 'wrong' (names an absent object) or 'accurate'."""
    named = [m.groups() for m in BARE_NOUN.finditer(text.lower().replace("-", " "))]
    if not named:
        assert not re.search(rf"\b({COLOUR_WORDS}|{SHAPE_WORDS})\b", text.lower()), text
        return "boilerplate", named
    present = {(o.colour, o.shape) for o in scene.objects}
    return ("wrong" if any(n not in present for n in named) else "accurate"), named


def test_alt_text_noise_rates_follow_parameters():
    noise = sw.AltTextNoise(p_boilerplate=0.2, p_wrong_attribute=0.35, p_one_object=0.6)
    rng = np.random.default_rng(123)
    counts, one_object, multi = collections.Counter(), 0, 0
    n = 3000
    for _ in range(n):
        scene = sw.sample_scene(rng, int(rng.integers(1, 5)))
        alt = sw.sample_alt_text(scene, rng, noise)
        kind, named = classify_alt(sw.alt_text_string(alt), scene)
        counts[kind] += 1
        if kind != "boilerplate" and len(scene.objects) > 1:
            multi += 1
            one_object += len(named) == 1
        for rewrite in sw.rewrite_alt_text(alt, rng, 3):  # paraphrases keep content and noise
            assert classify_alt(rewrite, scene) == (kind, named), (alt, rewrite)
    assert counts["boilerplate"] / n == pytest.approx(0.2, abs=0.03)
    assert counts["wrong"] / n == pytest.approx(0.35, abs=0.03)
    assert counts["accurate"] / n == pytest.approx(0.45, abs=0.03)
    assert one_object / multi == pytest.approx(0.6, abs=0.04)


def test_world_alt_texts_are_noisy_but_informative(world, splits):
    """The train split's alt-texts show the noise rates its manifest records (binomial, 4 sd)."""
    noise = json.loads((world / "manifest.json").read_text())["params"]["noise"]
    kinds = collections.Counter()
    for record in splits["train"]:
        scene = sw.Scene(tuple(sw.SceneObject(o["colour"], o["shape"], o["size"], o["x"], o["y"], o["radius"],
                                              0.0, (0, 0, 0)) for o in record["extras"]["scene"]["objects"]),
                         record["extras"]["scene"]["background"], record["extras"]["scene"]["texture"], 0.1, 0.0)
        kinds[classify_alt(record["alt_text"], scene)[0]] += 1
        assert record["alt_text"] != record["captions"]["rewrite_0"] != record["captions"]["rewrite_1"]
    n = len(splits["train"])
    for kind, p in (("boilerplate", noise["p_boilerplate"]), ("wrong", noise["p_wrong_attribute"]),
                    ("accurate", 1 - noise["p_boilerplate"] - noise["p_wrong_attribute"])):
        assert abs(kinds[kind] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (kind, kinds, noise)


def test_tokenizer_covers_the_world(world, splits):
    tok = Tokenizer(world / "tokenizer.model")
    text = model_config_defaults().text  # the ids the text towers assume
    assert (tok.pad_id, tok.eos_id) == (text.pad_id, text.eos_id) and tok.vocab_size <= SMALL["vocab_size"]
    classes = json.loads((world / "zeroshot_classes.json").read_text())
    texts = classes["classnames"] + [r["captions"]["short"] for r in splits["retrieval"]]
    rows = tok.encode(texts, 64)
    assert 1 not in rows  # no <unk>
    assert [tok.decode(row) for row in rows] == texts
    assert tok.count_tokens("a red circle to the left of a blue square") <= 12  # words, not letters


# ----------------------------------------------------------------------------- cache
def test_ensure_world_reuses_and_rebuilds(tmp_path, monkeypatch):
    tiny = dict(num_train=8, num_train_shards=1, num_zeroshot=2, num_retrieval=2, num_hard_negatives=2,
                vocab_size=300)
    out = sw.ensure_world(tmp_path / "cache", seed=3, **tiny)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert sw.ensure_world(out, seed=3, **tiny) == out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    sw.ensure_world(out, seed=4, **tiny)
    assert json.loads((out / "manifest.json").read_text())["params"]["seed"] == 4
    manifest = json.loads((out / "manifest.json").read_text())  # a world of an older generator
    (out / "manifest.json").write_text(json.dumps(manifest | {"generator_version": manifest["generator_version"] - 1}))
    sw.ensure_world(out, seed=4, **tiny)
    assert json.loads((out / "manifest.json").read_text())["generator_version"] == manifest["generator_version"]

    def killed(directory, params):
        (directory / "train-00000-of-00001.array_record").write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(world_build, "_write_world", killed)
    with pytest.raises(KeyboardInterrupt):
        sw.build_world(tmp_path / "killed", **tiny)
    assert not (tmp_path / "killed").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_refuses_to_replace_a_directory_that_is_no_world(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="manifest"):
        sw.build_world(tmp_path, num_train=4, num_train_shards=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="num_trian"):
        sw.ensure_world(tmp_path, num_trian=5)
    with pytest.raises(ValueError, match="p_boilerplate"):
        sw.AltTextNoise(p_boilerplate=0.9, p_wrong_attribute=0.3)


def test_hard_negative_that_would_be_true_is_dropped():
    """Red circle left of blue square, and a blue circle left of a red square: swapping the
    pair's colours names objects the image also shows (twice, in a caption naming all four),
    so it is no clean negative and is left out."""
    def obj(colour, shape, x, y):
        return sw.SceneObject(colour, shape, "small", x, y, 0.08, 0.0, (0, 0, 0))
    scene = sw.Scene((obj("red", "circle", 0.25, 0.25), obj("blue", "square", 0.75, 0.25),
                      obj("blue", "circle", 0.25, 0.75), obj("red", "square", 0.75, 0.75)), "white", "plain", 0.1, 0)
    caption = sw.ShortCaption(("red", "circle"), "left of", ("blue", "square"), (), None, 0)
    assert sw.short_caption_text(caption) == "a red circle to the left of a blue square"
    scene_two = sw.Scene(scene.objects[:2], "white", "plain", 0.1, 0)
    negatives = dict((kind, text) for text, kind in sw.hard_negatives(scene_two, caption, np.random.default_rng(0)))
    assert negatives["swap_colour"] == "a blue circle to the left of a red square"
    assert not sw.short_caption_holds(dataclasses.replace(caption, relation="right of"), scene_two, strict=False)
    assert sw.short_caption_holds(caption, scene_two) and sw.short_caption_holds(
        dataclasses.replace(caption, subject=("blue", "circle"), reference=("red", "square"),
                            others=(("red", "circle"), ("blue", "square"))), scene)
    full = dataclasses.replace(caption, others=(("blue", "circle"), ("red", "square")))
    kinds = [kind for _, kind in sw.hard_negatives(scene, full, np.random.default_rng(0))]
    assert "swap_colour" not in kinds and "swap_relation" in kinds


# ----------------------------------------------------------------------------- scene style, scarce captions
def _scenes(style, num_objects=(1, 5), count=150, seed=0):
    rng = np.random.default_rng(seed)
    return [sw.sample_scene(rng, int(rng.integers(*num_objects)), style=style) for _ in range(count)]


def test_scene_style_knobs_do_what_they_say():
    for scene in _scenes(sw.SceneStyle(shape_scale=1.4), (1, 4)):
        for o in scene.objects:
            low, high = sw.SIZE_RADII[o.size]
            assert 1.4 * low - 1e-9 <= o.radius <= 1.4 * high + 1e-9
    assert all(o.rotation == 0.0 for s in _scenes(sw.SceneStyle(rotation=False)) for o in s.objects)
    assert any(o.rotation != 0.0 for s in _scenes(sw.SceneStyle()) for o in s.objects)
    assert {s.texture for s in _scenes(sw.SceneStyle(textured=False))} == {"plain"}
    mono = _scenes(sw.SceneStyle(p_same_colour=1.0), (2, 5))
    assert all(len({o.colour for o in s.objects}) == 1 and len({o.shape for o in s.objects}) == len(s.objects)
               for s in mono)
    half = _scenes(sw.SceneStyle(p_same_colour=0.5), (2, 3), count=400)
    assert 0.42 <= np.mean([len({o.colour for o in s.objects}) == 1 for s in half]) <= 0.62  # 0.5 + chance 1/6 × 0.5
    rng = np.random.default_rng(1)  # a hard-negative pair must still differ in colour and shape
    for _ in range(50):
        s = sw.sample_scene(rng, 3, distinct_main_pair=True, style=sw.SceneStyle(p_same_colour=1.0))
        assert s.objects[0].colour != s.objects[1].colour and s.objects[0].shape != s.objects[1].shape
    params = sw.world_params(num_train=60, num_zeroshot=2, num_retrieval=20, num_hard_negatives=2,
                             scene={"max_objects": 2})
    for split in ("train", "retrieval"):
        assert all(len(scene.objects) <= 2 for _, scene in sw.generate_split(split, params, 60 if split == "train" else 20))


def test_default_style_keeps_the_scene_stream():
    """The knobs at their defaults draw exactly what sample_scene drew before they existed."""
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for n in (1, 2, 3, 4, 2):
        assert sw.sample_scene(rng_a, n) == sw.sample_scene(rng_b, n, style=sw.SceneStyle())
    assert rng_a.random() == rng_b.random()
    with pytest.raises(TypeError, match="shape_scal"):
        sw.world_params(scene={"shape_scal": 1.2})
    with pytest.raises(ValueError, match="max_objects"):
        sw.SceneStyle(max_objects=5)
    with pytest.raises(ValueError, match="max_objects 4"):  # four shapes ×1.6 cannot be laid out
        sw.SceneStyle(shape_scale=1.6)
    rng = np.random.default_rng(0)  # the largest allowed scale lays out 4 objects, and 1.6 lays out 3
    for _ in range(300):
        sw.sample_scene(rng, 4, style=sw.SceneStyle(shape_scale=1.5))
        sw.sample_scene(rng, 3, style=sw.SceneStyle(shape_scale=1.6, max_objects=3))


def test_object_count_and_background_mention_knobs():
    """num_object_weights sets how many objects train scenes hold; p_caption_background how often
    short captions name the background; both keep every other draw (same scenes, same words)."""
    def train(scene_style, count=600):
        params = sw.world_params(num_train=count, num_zeroshot=2, num_retrieval=2, num_hard_negatives=2,
                                 scene=scene_style)
        return [(example["captions"]["short"], scene) for example, scene in sw.generate_split("train", params, count)]
    default = train({})
    counts = np.bincount([len(s.objects) for _, s in default], minlength=5)[1:] / len(default)
    assert np.allclose(counts, (0.2, 0.3, 0.3, 0.2), atol=0.05)
    half_single = train({"num_object_weights": (0.5, 0.3, 0.2, 0.0)})
    counts = np.bincount([len(s.objects) for _, s in half_single], minlength=5)[1:] / len(half_single)
    assert np.allclose(counts, (0.5, 0.3, 0.2, 0.0), atol=0.05)
    quiet = train({"p_caption_background": (0.0, 0.0)})
    assert not any(" background" in text for text, _ in quiet)
    assert [s for _, s in quiet] == [s for _, s in default]  # the same scenes ...
    for (text, _), (quiet_text, _) in zip(default, quiet):  # ... and the same captions, less the background
        assert text.split(" on a")[0] == quiet_text
    loud = train({"p_caption_background": (1.0, 1.0)})
    assert all(text.endswith(" background") for text, _ in loud)
    single = [" background" in text for text, s in default if len(s.objects) == 1]
    assert 0.6 <= np.mean(single) <= 0.8  # the default 0.7 for one object
    with pytest.raises(ValueError, match="num_object_weights"):
        sw.SceneStyle(num_object_weights=(0, 1, 1, 1), max_objects=1)
    with pytest.raises(ValueError, match="p_caption_background"):
        sw.SceneStyle(p_caption_background=(0.5, 1.5))


def test_caption_fraction_keeps_images_and_texts(tmp_path):
    tiny = dict(num_train=40, num_train_shards=2, num_zeroshot=2, num_retrieval=2, num_hard_negatives=2,
                vocab_size=400)
    full = sw.build_world(tmp_path / "full", seed=2, **tiny)
    scarce = sw.build_world(tmp_path / "scarce", seed=2, caption_fraction=0.25, **tiny)
    full_rows = [r for p in sorted(full.glob("train-*")) for r in read_split(p)]
    scarce_rows = [r for p in sorted(scarce.glob("train-*")) for r in read_split(p)]
    assert [r["id"] for r in full_rows] == [r["id"] for r in scarce_rows]
    captioned = [r["id"] for r in scarce_rows if r["captions"]]
    assert len(captioned) == 10  # round(0.25 × 40)
    mask = sw.captioned_train_mask(sw.world_params(seed=2, caption_fraction=0.25, **tiny))
    assert captioned == [r["id"] for r, keep in zip(full_rows, mask) if keep]
    for a, b in zip(full_rows, scarce_rows):
        assert a["image"] == b["image"] and a["alt_text"] == b["alt_text"]
        assert b["captions"] in ({}, a["captions"])
    assert (full / "tokenizer.model").read_bytes() == (scarce / "tokenizer.model").read_bytes()
    assert json.loads((scarce / "manifest.json").read_text())["counts"]["train_captioned"] == 10
