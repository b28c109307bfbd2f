"""Config loading and overrides: typed values, unknown keys named with the nearest key."""
from pathlib import Path

import pytest

from bigvl.config import ConfigError, apply_overrides, base_config, load_config, validate


def test_overrides_are_typed():
    c = base_config()
    apply_overrides(c, ["optim.lr=0.01", "total_steps=7", "progress_bar=false",
                        "data.train_paths=['a', 'b']", "model.image.variant=L/14"])
    assert c.optim.lr == 0.01 and c.total_steps == 7 and c.progress_bar is False
    assert c.data.train_paths == ["a", "b"] and c.model.image.variant == "L/14"


@pytest.mark.parametrize("override,fragment", [
    ("optim.lrr=1", "'optim.lr'"),
    ("optimm.lr=1", "'optim'"),
    ("total_step=3", "'total_steps'"),
])
def test_unknown_key_suggests_nearest(override, fragment):
    with pytest.raises(ConfigError, match="unknown config key") as e:
        apply_overrides(base_config(), [override])
    assert fragment in str(e.value)


def test_bad_value_type_names_the_key():
    with pytest.raises(ConfigError, match="'total_steps' expects int"):
        apply_overrides(base_config(), ["total_steps=many"])


def test_validate_rejects_bad_choices():
    c = base_config()
    c.data.train_paths, c.data.tokenizer = ["x"], "t"
    validate(c)
    c.loss.name = "hinge"
    with pytest.raises(ConfigError, match="loss.name"):
        validate(c)


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py")))
def test_shipped_configs_load(name):
    c = load_config(f"configs/{name}.py")
    assert c.is_locked
    with pytest.raises(AttributeError):
        c.not_a_key = 1


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.py")


@pytest.mark.parametrize("name,count", [("clip_b16", 149_620_737),  # open_clip ViT-B-16
                                        ("siglip_b16", 203_155_970)])  # big_vision SigLIP B/16
def test_real_configs_build_the_published_models(name, count):
    import jax

    from bigvl.models import build_model, count_params
    from bigvl.models import dummy_inputs
    config = load_config(f"configs/{name}.py")
    model = build_model(config.model)
    images, tokens = dummy_inputs(config.model)
    assert count_params(jax.eval_shape(model.init, jax.random.key(0), images, tokens)["params"]) == count


def test_none_override_for_optional_keys():
    c = load_config("configs/siglip_b16.py")
    apply_overrides(c, ["model.bias_init=None"])
    assert c.model.bias_init is None


def test_several_texts_need_the_softmax_loss():
    c = base_config()
    c.data.train_paths, c.data.tokenizer = ["x"], "t"
    c.data.caption_strategy, c.loss.name = "dual", "sigmoid"
    with pytest.raises(ConfigError, match="gives 2 texts per image"):
        validate(c)
    c.loss.name, c.loss.text_weights = "softmax", [1.0]
    with pytest.raises(ConfigError, match="loss.text_weights"):
        validate(c)
    c.loss.text_weights = [0.5, 0.5]
    validate(c)
