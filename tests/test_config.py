"""Config loading (shipped names and paths), the `:flag,key=value` grammar, and overrides:
typed values, unknown keys named with the nearest key."""
from pathlib import Path

import pytest
import tomllib

from bigvl.config import (
    ConfigError,
    apply_overrides,
    base_config,
    list_configs,
    load_config,
    parse_config_args,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")


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


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_with_no_args_by_name_and_by_path(name):
    c = load_config(name)
    assert c.is_locked
    with pytest.raises(AttributeError):
        c.not_a_key = 1
    assert load_config(f"configs/{name}.py").to_json() == c.to_json()


def test_list_configs_names_every_shipped_config_with_its_docstring():
    listed = dict(list_configs())
    assert sorted(listed) == SHIPPED
    assert listed["demo"].startswith("The demo: a small CLIP") and all(listed.values())


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.py")
    with pytest.raises(ConfigError, match="named without .py: 'demo'"):
        load_config("demo.py")


def test_unknown_config_name_lists_the_shipped_ones_nearest_first():
    with pytest.raises(ConfigError, match="unknown config 'dem0'") as e:
        load_config("dem0:alt")
    listed = str(e.value).split("(nearest first) ")[1].split(";")[0].split(", ")
    assert listed[0] == "demo" and sorted(listed) == SHIPPED


def test_shipped_configs_are_the_installed_package_bigvl_configs():
    import bigvl.configs
    assert Path(bigvl.configs.__file__).resolve().parent == ROOT / "configs"  # the editable install maps it


def test_pyproject_lists_every_package_under_bigvl():
    """pyproject lists the packages (discovery cannot map configs/ to bigvl.configs): a new one must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bigvl").rglob("__init__.py")}
    assert listed == found | {"bigvl.configs"}


def test_grammar_flags_and_typed_values():
    args = parse_config_args("alt, sigmoid,steps=300,lr=0.5,tag=x,scan=false", flags=("alt", "mix", "sigmoid"),
                             values={"steps": 0, "lr": 1e-3, "tag": "", "scan": True, "keep": 7})
    assert args.flags == {"alt", "sigmoid"} and "mix" not in args
    assert args.values == {"steps": 300, "lr": 0.5, "tag": "x", "scan": False, "keep": 7}
    assert isinstance(args["steps"], int) and isinstance(args["lr"], float)
    assert args.one_of(("alt", "mix"), "recap") == "alt" and args.one_of(("mix",), "recap") == "recap"
    assert parse_config_args("").flags == frozenset()


@pytest.mark.parametrize("arg,message", [
    ("alx", "unknown config flag 'alx' (did you mean 'alt'?); this config knows flags alt, mix and keys steps=0"),
    ("step=3", "unknown config key 'step' (did you mean 'steps'?); this config knows flags alt, mix and keys steps=0"),
    ("steps=many", "config argument 'steps' expects int, got 'many'"),
    ("steps", "config argument 'steps' needs a value: steps=0"),
    ("alt=1", "config flag 'alt' takes no value"),
    ("alt,alt", "config argument 'alt' is given twice"),
])
def test_grammar_errors_name_the_known_arguments(arg, message):
    with pytest.raises(ConfigError) as e:
        parse_config_args(arg, flags=("alt", "mix"), values={"steps": 0})
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("spec,message", [
    ("demo:alt,mix", "config 'demo': config flags 'alt' and 'mix' exclude each other"),
    ("demo:classic", "config 'demo': unknown config flag 'classic'"),
    ("clips_demo:alt", "this config knows no arguments"),
    ("recipe_demo:partial,300", "unknown config flag '300'"),
    ("configs/demo.py:sigmod", "config file 'configs/demo.py': unknown config flag 'sigmod' (did you mean 'sigmoid'?)"),
])
def test_a_config_rejects_arguments_it_does_not_know(spec, message):
    with pytest.raises(ConfigError) as e:
        load_config(spec)
    assert message in str(e.value)


def test_shipped_configs_parse_their_arguments():
    assert load_config("demo:alt,sigmoid").data.caption_strategy == "alt"
    assert load_config("demo:alt,sigmoid").loss.name == "sigmoid"
    assert load_config("demo_classic").data.caption_strategy == "mix"
    assert load_config("demo_classic:recap").data.caption_strategy == "recap"
    c = load_config("recipe_demo:partial,steps=300")
    assert (c.data.caption_strategy, c.total_steps, c.eval_steps) == ("partial", 300, 0)
    assert load_config("recipe_demo").total_steps == load_config("demo").total_steps
    assert load_config("own_data:b16").model.text.vocab_size == 32_000
    assert load_config("coca_b16:fsdp_tp").mesh.to_dict() == {"data": -1, "fsdp": 8, "tensor": 4}
    assert load_config("recipe_b16:partial,fsdp").mesh.fsdp == 8


@pytest.mark.parametrize("name,count", [("clip_b16", 149_620_737),  # open_clip ViT-B-16
                                        ("siglip_b16", 203_155_970)])  # big_vision SigLIP B/16
def test_real_configs_build_the_published_models(name, count):
    import jax

    from bigvl.models import build_model, count_params, dummy_inputs
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


def test_demo_classic_is_the_demo_before_issue_20():
    """Its own world directory (cached worlds stay valid) and the towers and budget earlier figures used."""
    c, demo = load_config("demo_classic"), load_config("demo")
    assert Path(c.world.dir).name == "synthetic_world_classic_seed0"
    assert Path(demo.world.dir).name == "synthetic_world_seed0"
    assert all(p.startswith(c.world.dir) for p in [*c.data.train_paths, c.data.tokenizer, c.evals.zeroshot.split,
                                                    c.evals.zeroshot.classes, c.evals.retrieval.split,
                                                    c.evals.long_retrieval.split, c.evals.hard_negatives.split,
                                                    c.evals.pointing.split])
    assert (c.total_steps, c.eval_steps, c.ckpt_steps, c.data.caption_strategy) == (600, 200, 200, "mix")
    image = c.model.image
    assert (image.image_size, image.patch_size, image.width, image.depth) == (64, 8, 128, 4)
    assert (c.model.text.width, c.model.text.depth, c.model.text.mlp_dim) == (128, 4, 512)
    assert c.world.scene.rotation and c.world.scene.textured and c.world.scene.max_objects == 4


def test_the_cli_names_the_shipped_configs_for_an_unknown_name(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "bigvl.main", "--config", "dem0:alt", "--workdir", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # outside the clone
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: unknown config 'dem0'; the shipped configs are (nearest first) demo, ")


def _config_file(tmp_path, body: str) -> str:
    path = tmp_path / "my_evals.py"
    path.write_text("from bigvl.config import base_config\n\n\ndef get_config():\n    c = base_config()\n"
                    "    c.data.train_paths, c.data.tokenizer = ['x'], 't'\n" + body + "    return c\n")
    return str(path)


@pytest.mark.parametrize("body,message", [
    ("    c.evals.held_out = dict(type='zeroshto', split='z')\n",
     "config key 'evals.held_out.type': unknown evaluator type 'zeroshto'; did you mean 'zeroshot'?"),
    ("    c.evals.held_out = dict(type='retrieval', split='r', feild='long')\n",
     "unknown config key 'evals.held_out.feild'; did you mean 'evals.held_out.field'?"),
    ("    c.evals.held_out = dict(type='captioning', split='r', max_length='32')\n",
     "config key 'evals.held_out.max_length' expects int, got str '32'"),
    ("    c.evals.held_out = 'r.array_record'\n", "config key 'evals.held_out' must be an evaluator entry"),
])
def test_evals_entries_are_checked_against_their_type(tmp_path, body, message):
    """Unknown type or option: one line with the nearest name, from validate (before anything compiles)."""
    config = load_config(_config_file(tmp_path, body))
    with pytest.raises(ConfigError) as e:
        validate(config)
    assert message in str(e.value)


def test_evals_entries_get_their_types_defaults_and_typed_overrides(tmp_path):
    config = load_config(_config_file(tmp_path, "    c.evals.held_out = dict(type='captioning', split='r')\n"))
    assert config.evals.held_out.to_dict() == {"type": "captioning", "split": "r", "field": "short",
                                               "max_length": 32, "method": "greedy", "beam_size": 4}
    apply_overrides(config, ["evals.held_out.max_length=16", "evals.retrieval.split=x.array_record"])
    assert config.evals.held_out.max_length == 16 and config.evals.retrieval.split == "x.array_record"
    with pytest.raises(ConfigError, match="'evals.held_out.max_length' expects int"):
        apply_overrides(config, ["evals.held_out.max_length=long"])
    with pytest.raises(ConfigError, match="did you mean 'evals.held_out.method'"):
        apply_overrides(config, ["evals.held_out.methd=beam"])


def test_evaluator_types_check_the_model_kind_and_the_decoder_context():
    c = load_config("coca_demo")
    validate(c)
    c.evals.captioning.max_length = c.model.decoder.context_length + 1
    with pytest.raises(ConfigError, match="'evals.captioning': max_length 33 exceeds model.decoder.context_length 32"):
        validate(c)
    c = load_config("coca_demo")
    c.evals.pointing.split = c.evals.retrieval.split
    with pytest.raises(ConfigError, match="'evals.pointing': type 'pointing' runs on model.kind two_tower"):
        validate(c)
