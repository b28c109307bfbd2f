"""The records of the synthetic world's splits: one example per scene, each from its own random stream.

Held-out splits: single-object zero-shot classification (colour × shape classes),
retrieval (whose records also carry pointing regions), and compositional hard negatives
(swapped colours / shapes / relation, replaced colour), each drawn from its own random
stream and never equal to a train scene. Everything is deterministic given the seed.
"""
from __future__ import annotations

import collections
import types
from typing import Any, Iterator

import numpy as np

from bigvl.data.world.alt_text import alt_text_string, rewrite_alt_text, sample_alt_text
from bigvl.data.world.captions import ShortCaption, hard_negatives, sample_short_caption, short_caption_text
from bigvl.data.world.long_captions import long_caption
from bigvl.data.world.params import WorldParams
from bigvl.data.world.phrases import noun_phrase
from bigvl.data.world.render import encode_jpeg, render_scene
from bigvl.data.world.scene import COLOURS, EXTENT, SHAPES, Scene, SceneStyle, sample_scene, scene_key, scene_to_dict

CLASS_TEMPLATES = ("a photo of the {}.", "a drawing of the {}.", "the {} on a textured background.",
                   "an illustration of the {}.", "{} clipart", "a picture with the {} in it.")

SPLIT_STREAMS = types.MappingProxyType({"train": 0, "zeroshot": 1, "retrieval": 2, "hard_negatives": 3})


def class_names() -> list[str]:
    """Zero-shot class names, index = colour index × len(SHAPES) + shape index."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def example_rng(seed: int, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of one example: independent across seeds, splits and indices."""
    return np.random.default_rng([seed, SPLIT_STREAMS[split], index, attempt])


def _scene_for(split: str, index: int, rng: np.random.Generator, labels: np.ndarray | None,
               style: SceneStyle) -> Scene:
    if split == "train":
        weights = np.asarray(style.num_object_weights[:style.max_objects])
        num_objects = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
        return sample_scene(rng, num_objects, style=style)
    if split == "zeroshot":
        return sample_scene(rng, 1, label=int(labels[index]), style=style)
    return sample_scene(rng, int(rng.integers(2, max(2, style.max_objects) + 1)),
                        distinct_main_pair=split == "hard_negatives", style=style)


def make_example(example_id: str, scene: Scene, rng: np.random.Generator,
                 params: WorldParams) -> tuple[dict[str, Any], ShortCaption]:
    """One record dict (schema of `bigvl.data.records`) with the rendered JPEG and all
    texts, plus the content of its short caption. extras: {"scene": scene_to_dict(scene)}."""
    short = sample_short_caption(scene, rng, params.scene.p_caption_background)
    alt = sample_alt_text(scene, rng, params.noise)
    captions = {"short": short_caption_text(short), "long": long_caption(scene, rng)}
    for k, text in enumerate(rewrite_alt_text(alt, rng, params.num_rewrites)):
        captions[f"rewrite_{k}"] = text
    example = {"id": example_id,
               "image": encode_jpeg(render_scene(scene, params.image_size), params.jpeg_quality),
               "alt_text": alt_text_string(alt), "captions": captions,
               "extras": {"scene": scene_to_dict(scene)}}
    return example, short


def pointing_regions(scene: Scene) -> list[dict[str, Any]]:
    """The pointing-game targets of a scene, as the generic ``extras["regions"]`` field.

    One region per object whose colour+shape is unique in the scene (a query naming a
    repeated object would be ambiguous): {"text": its noun phrase ("a red circle"),
    "x", "y": its centre, "radius": EXTENT × its radius, the disc every shape fits in},
    all fractions of the image side, from the (rounded) numbers of `scene_to_dict`.
    """
    objects = scene_to_dict(scene)["objects"]
    counts = collections.Counter((o["colour"], o["shape"]) for o in objects)
    return [{"text": noun_phrase(o["colour"], o["shape"]), "x": o["x"], "y": o["y"], "radius": EXTENT * o["radius"]}
            for o in objects if counts[(o["colour"], o["shape"])] == 1]


def generate_split(split: str, params: WorldParams, count: int,
                   avoid: frozenset | set = frozenset()) -> Iterator[tuple[dict[str, Any], Scene]]:
    """Yields the `count` (example, scene) pairs of a split in order; ids "{split}/{index:06d}".

    A scene whose `scene_key` is in `avoid` (the train scenes) is drawn again. Split
    extras (beside "scene"): zeroshot {"label"}; retrieval {"regions"} (`pointing_regions`);
    hard_negatives {"positive", "negatives", "negative_kinds"}.
    """
    labels = None
    if split == "zeroshot":
        label_rng = np.random.default_rng([params.seed, SPLIT_STREAMS[split], 2 ** 32])
        labels = label_rng.permutation(np.arange(count) % (len(COLOURS) * len(SHAPES)))
    for index in range(count):
        for attempt in range(100):
            rng = example_rng(params.seed, split, index, attempt)
            scene = _scene_for(split, index, rng, labels, params.scene)
            if scene_key(scene, params.image_size) not in avoid:
                break
        else:
            raise RuntimeError(f"{split}/{index}: every scene drawn repeats a train scene")
        example, short = make_example(f"{split}/{index:06d}", scene, rng, params)
        if split == "zeroshot":
            example["extras"]["label"] = int(labels[index])
        elif split == "retrieval":  # the split the pointing game reads
            example["extras"]["regions"] = pointing_regions(scene)
        elif split == "hard_negatives":
            negatives = hard_negatives(scene, short, rng)
            example["extras"].update(positive=example["captions"]["short"],
                                     negatives=[text for text, _ in negatives],
                                     negative_kinds=[kind for _, kind in negatives])
        yield example, scene

