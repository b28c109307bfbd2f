"""Config files and values of the wrong type, unknown keys in config files, and contradictions."""
import pytest

from bigvl.config import ConfigError, apply_overrides, base_config, load_config, validate

DEMO = "demo"


def _config_file(tmp_path, body):
    path = tmp_path / "bad_config.py"
    path.write_text("from bigvl.config import base_config\n\n\ndef get_config(arg=''):\n"
                    "    c = base_config()\n    c.data.train_paths, c.data.tokenizer = ['x'], 't'\n"
                    f"    {body}\n    return c\n")
    return str(path)


@pytest.mark.parametrize("body,message", [
    ("c.batch_size = '64'", "config key 'batch_size' expects int, got str '64'"),
    ("c.batch_size = 64.0", "config key 'batch_size' expects int, got float '64.0'"),
    ("c.data.train_paths = 'a.array_record'", "config key 'train_paths' expects list, got str"),
])
def test_wrong_type_in_a_config_file_is_a_config_error(tmp_path, body, message):
    with pytest.raises(ConfigError, match="bad_config.py") as e:
        load_config(_config_file(tmp_path, body))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("body,message", [
    ("c.batch_sise = 64", "unknown config key 'batch_sise'; did you mean 'batch_size'?"),
    ("c.optim.lrr = 0.1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    ("c.total_steps = None", "config key 'total_steps' expects int, got None"),
    ("c.model.image.image_size = None", "config key 'model.image.image_size' expects int, got None"),
])
def test_validate_checks_every_key_against_the_schema(tmp_path, body, message):
    config = load_config(_config_file(tmp_path, body))  # ml_collections lets these through
    with pytest.raises(ConfigError) as e:
        validate(config)
    assert str(e.value).startswith(message)


def test_schema_accepts_the_defaults_ints_for_floats_and_optional_keys():
    c = base_config()
    c.data.train_paths, c.data.tokenizer = ["x"], "t"
    c.optim.lr = 1  # an int where a float is expected is fine
    c.model.bias_init, c.loss.name, c.model.temperature_init = -10.0, "sigmoid", 10.0  # None by default
    validate(c)


@pytest.mark.parametrize("overrides,key", [
    (["loss.name=sigmoid"], "model.bias_init"),
    (["loss.name=sigmoid_ring"], "model.bias_init"),
    (["data.caption_strategy=partial", "data.partial_max_tokens=64"], "data.partial_max_tokens"),
    (["loss.text_weights=[0.5, 0.5]"], "loss.text_weights"),
    (["ckpt_steps=0"], "ckpt_steps"),
    (["keep_ckpts=0"], "keep_ckpts"),
    (["eval_steps=-1"], "eval_steps"),
    (["data.num_workers=-2"], "data.num_workers"),
    (["model.image.image_size=30"], "image_size 30 not divisible by patch 4"),
])
def test_contradictions_are_one_line_config_errors(overrides, key):
    config = load_config(DEMO)
    config.world.build = False
    apply_overrides(config, overrides)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        validate(config)
    assert "\n" not in str(e.value)


def test_consistent_variants_still_validate():
    for spec in ("demo", "demo:sigmoid", "demo:alt", "demo:mix,sigmoid", "demo_classic", "demo_classic:sigmoid",
                 "configs/demo.py:recap"):
        validate(load_config(spec))
    config = load_config(DEMO)
    apply_overrides(config, ["data.caption_strategy=partial", "data.partial_max_tokens=32"])
    validate(config)  # K = context length: fits (the tokenizer keeps EOS last)


def test_a_run_shorter_than_its_warmup_is_allowed_and_said(caplog):
    """`--config.total_steps=20` on a config with 50 warmup steps (a smoke run) trains; the log says
    the learning rate never leaves warmup. The schedule itself is checked in tests/test_optimizer.py."""
    config = load_config("demo")
    config.total_steps = 20
    with caplog.at_level("WARNING"):
        validate(config)
    assert "whole run is warmup" in caplog.text
