"""The world study's config plumbing and the shape probe's classifier."""
import numpy as np
import pytest

from experiments.shape_probe import ridge_probe
from experiments.world_study import VARIANTS, study_config


def test_variants_change_what_they_say_and_worlds_are_keyed_by_world_keys(tmp_path):
    base = study_config({}, 600, str(tmp_path))
    bigger = study_config(VARIANTS["shapes_x1.4"][1], 600, str(tmp_path))
    conv = study_config(VARIANTS["conv_stem"][1], 600, str(tmp_path))
    assert bigger.world.scene.shape_scale == 1.4 and base.world.scene.shape_scale == 1.0
    assert conv.model.image.stem == "conv"
    assert bigger.world.dir != base.world.dir == conv.world.dir  # a model change reuses the world
    for config in (base, bigger):  # every file the run reads comes from its own world
        d = config.world.dir
        assert config.data.train_paths[0].startswith(d) and config.data.tokenizer.startswith(d)
        assert all(config.evals[k].split.startswith(d) for k in ("zeroshot", "retrieval", "hard_negatives"))
    assert base.total_steps == 600 and base.eval_steps == 0
    with pytest.raises(KeyError, match="shape_scal"):
        study_config({"world.scene.shape_scal": 1.2}, 10, str(tmp_path))


def test_ridge_probe_separates_what_is_separable_and_nothing_else():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    features = rng.normal(size=(300, 8))
    features[np.arange(300), labels] += 6.0  # each class lifts its own feature
    assert ridge_probe(features, labels) == 1.0
    shuffled = rng.permutation(labels)
    assert abs(ridge_probe(features, shuffled) - 1 / 3) < 0.1


def test_every_variant_is_a_valid_config(tmp_path):
    from bigvl.config import validate
    for name, (_, overrides) in VARIANTS.items():
        config = study_config(overrides, 600, str(tmp_path))
        validate(config)  # ConfigError names the key of a variant gone stale
        assert bool(config.data.negative_word_groups) == ("negclip" in name), name


def test_rendered_probe_images_are_one_object_scenes_of_the_style():
    from bigvl.data.world.render import render_scene
    from bigvl.data.world.scene import SceneStyle, sample_scene
    from experiments.shape_probe import SHAPES, rendered_images
    style = SceneStyle(shape_scale=1.6, max_objects=3, rotation=False, textured=False)
    images, labels = rendered_images(style, 32, count=50, seed=3)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    rng = np.random.default_rng(3)  # the same draws, made here
    for image, label in zip(images[:5], labels[:5]):
        scene = sample_scene(rng, 1, style=style)
        assert SHAPES[label] == scene.objects[0].shape
        np.testing.assert_array_equal(image, render_scene(scene, 32))
    assert set(labels.tolist()) == set(range(len(SHAPES)))


def test_the_demo_is_the_study_run_its_figures_came_from(tmp_path):
    """docs/results/world_study.md says configs/demo.py is shape_world_70_recap_small_distinct at 1,200 steps:
    every key that decides training agrees (paths, eval cadence and reporting aside)."""
    from bigvl.config import load_config
    from experiments.world_study import VARIANTS, study_config

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    study = flat(study_config(VARIANTS["shape_world_70_recap_small_distinct"][1], 1200, str(tmp_path)).to_dict())
    demo = flat(load_config("configs/demo.py").to_dict())
    ignored = ("world.dir", "data.train_paths", "data.tokenizer", "evals.", "eval_steps", "ckpt_steps",
               "progress_bar", "report")
    differ = {k for k in set(study) | set(demo) if study.get(k) != demo.get(k) and not k.startswith(ignored)}
    assert not differ, {k: (study.get(k), demo.get(k)) for k in differ}
    assert demo["evals.zeroshot.split"].startswith(demo["world.dir"]) and demo["total_steps"] == 1200
