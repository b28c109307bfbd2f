"""The built-in synthetic recaptioned world: coloured shapes, noisy alt-texts, true captions.

Each image holds 1–4 shapes (5 shapes × 6 colours, small or large) on a subtly textured
background. Per image the world writes what a recaptioned web dataset holds:

- `alt_text`: web-like and noisy — boilerplate unrelated to the image, a wrong colour or
  shape, or (most often) only one of the objects ("red circle clipart");
- `captions["short"]`: every object (colour + shape) and the main spatial relation;
- `captions["long"]`: 4–8 sentences, ". "-separated: each object's colour, size and
  position, relations between pairs, the background;
- `captions["rewrite_k"]`: LaCLIP-style paraphrases of the alt-text (same content and
  noise, other wording).

Held-out splits: single-object zero-shot classification (colour × shape classes),
retrieval (with pointing regions, ``extras["regions"]``), and compositional hard negatives
(swapped colours / shapes / relation, replaced colour), each drawn from its own random
stream and never equal to a train scene. Everything is deterministic given the seed.

    build_world("/tmp/world", seed=0)   # or ensure_world(...) to reuse a cached build
    render_scene(sample_scene(np.random.default_rng(0), 3), 64)  # uint8 [64, 64, 3]

Positions are fractions of the image side, x to the right and y downwards. Objects keep
away from the border so a random resized crop (scale ≥ 0.8, no flips) keeps captions true.

Modules: scene (vocabulary, geometry, sampling), render (pixels, JPEG), phrases (shared
words), captions (short captions, hard negatives), long_captions, alt_text (noisy
alt-texts, rewrites), params (WorldParams), examples (records of each split, pointing
regions), build (files, manifest, cache). Only tools, the CLI and tests import this
package; the library reads its files.
"""
from bigvl.data.world.alt_text import AltText, AltTextNoise, alt_text_string, rewrite_alt_text, sample_alt_text
from bigvl.data.world.build import (
                                   GENERATOR_VERSION,
                                   build_world,
                                   captioned_train_mask,
                                   ensure_config_world,
                                   ensure_world,
                                   read_manifest,
)
from bigvl.data.world.captions import (
                                   ShortCaption,
                                   hard_negatives,
                                   sample_short_caption,
                                   short_caption_holds,
                                   short_caption_text,
)
from bigvl.data.world.examples import (
                                   CLASS_TEMPLATES,
                                   SPLIT_STREAMS,
                                   class_names,
                                   example_rng,
                                   generate_split,
                                   make_example,
                                   pointing_regions,
)
from bigvl.data.world.long_captions import long_caption
from bigvl.data.world.params import WorldParams, world_params
from bigvl.data.world.phrases import noun_phrase
from bigvl.data.world.render import encode_jpeg, render_scene
from bigvl.data.world.scene import (
                                   BACKGROUND_COLOURS,
                                   COLOURS,
                                   EXTENT,
                                   RELATIONS,
                                   SHAPES,
                                   SIZE_RADII,
                                   TEXTURES,
                                   Scene,
                                   SceneObject,
                                   SceneStyle,
                                   relation,
                                   sample_scene,
                                   scene_key,
                                   scene_to_dict,
)

__all__ = [
    "AltText", "AltTextNoise", "alt_text_string", "rewrite_alt_text", "sample_alt_text",
    "GENERATOR_VERSION", "build_world", "captioned_train_mask", "ensure_config_world", "ensure_world",
    "read_manifest",
    "ShortCaption", "hard_negatives", "sample_short_caption", "short_caption_holds", "short_caption_text",
    "CLASS_TEMPLATES", "SPLIT_STREAMS", "class_names", "example_rng", "generate_split", "make_example",
    "pointing_regions",
    "long_caption",
    "WorldParams", "world_params",
    "noun_phrase",
    "encode_jpeg", "render_scene",
    "BACKGROUND_COLOURS", "COLOURS", "EXTENT", "RELATIONS", "SHAPES", "SIZE_RADII", "TEXTURES",
    "Scene", "SceneObject", "SceneStyle", "relation", "sample_scene", "scene_key", "scene_to_dict",
]
