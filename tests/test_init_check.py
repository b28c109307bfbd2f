"""Fine-tuning's start-up check (bigvl/train/init_check.py): a training config whose model would compute
something else than the `init.workdir` run stops with one line naming each differing key and both values."""
import os

import pytest


def _run_dir(tmp_path, **model):
    """A workdir holding only the config.json of a run with `model` overrides (nested dicts)."""
    from bigvl.config import base_config
    config = base_config()
    for key, value in model.items():
        if isinstance(value, dict):
            config.model[key].update(value)
        else:
            config.model[key] = value
    path = tmp_path / "source"
    os.makedirs(path, exist_ok=True)
    (path / "config.json").write_text(config.to_json_best_effort(indent=2))
    return str(path)


IMPORTED_CLIP = dict(activation="quick_gelu", layer_norm_eps=1e-5, temperature_init=100.0,
                     image={"variant": "custom", "width": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072,
                            "patch_size": 16, "pixel_mean": (0.48145466, 0.4578275, 0.40821073),
                            "pixel_std": (0.26862954, 0.26130258, 0.27577711)},
                     text={"mask_pads": False, "eos_id": 49407, "bos_id": 49406})


def test_every_differing_key_is_named_with_both_values(tmp_path):
    from bigvl.config import base_config
    from bigvl.train.init_check import check_init_architecture
    source = _run_dir(tmp_path, **IMPORTED_CLIP)
    config = base_config()  # bigvl's defaults: tanh GELU, eps 1e-6, x/127.5 - 1, sentencepiece ids
    with pytest.raises(ValueError) as e:
        check_init_architecture(config.model, source)
    message = str(e.value)
    assert "\n" not in message
    for part in ("model.activation = 'gelu_tanh' here, 'quick_gelu' in the run",
                 "model.layer_norm_eps = 1e-06 here, 1e-05 in the run",
                 "model.image.pixel_mean = (0.5, 0.5, 0.5) here, (0.48145466, 0.4578275, 0.40821073) in the run",
                 "model.image.pixel_std", "model.text.mask_pads = True here, False in the run",
                 "model.text.eos_id = 3 here, 49407 in the run", "model.text.bos_id"):
        assert part in message, (part, message)
    # variant 'B/16' resolves to the run's sizes; temperature_init comes from the params: neither is named
    assert "variant" not in message and "width" not in message and "temperature_init" not in message
    config.model.update(activation="gelu", layer_norm_eps=1e-5)
    config.model.image.update(pool="gap")
    config.model.text.update(causal=False, pool="last")
    with pytest.raises(ValueError) as e:
        check_init_architecture(config.model, source)
    for part in ("model.activation = 'gelu' here", "model.image.pool = 'gap' here, 'cls' in the run",
                 "model.text.causal = False here, True in the run", "model.text.pool = 'last' here, 'eos' in the run"):
        assert part in str(e.value)
    assert "layer_norm_eps" not in str(e.value)


def test_keys_that_may_differ_when_fine_tuning_pass(tmp_path):
    from bigvl.config import base_config
    from bigvl.train.init_check import check_init_architecture
    source = _run_dir(tmp_path, **IMPORTED_CLIP)
    config = base_config()
    config.model.update(activation="quick_gelu", layer_norm_eps=1e-5, dtype="bfloat16", remat="full",
                        scan_layers=True, attention_impl="xla", temperature_init=10.0)
    config.model.image.update(pixel_mean=(0.48145466, 0.4578275, 0.40821073),
                              pixel_std=(0.26862954, 0.26130258, 0.27577711))
    config.model.text.update(mask_pads=False, eos_id=49407, bos_id=49406, context_length=248)  # Long-CLIP
    check_init_architecture(config.model, source)  # no error


def test_training_stops_at_start_up_before_reading_data(tmp_path):
    """The check runs in train_and_evaluate before the tokenizer, the data or any compilation."""
    from bigvl.config import base_config
    from bigvl.train.loop import train_and_evaluate
    from tests.helpers.tiny import tiny_towers
    config = base_config()
    tiny_towers(config.model, image_size=32, context_length=16)
    config.model.embed_dim = 32
    config.data.tokenizer = str(tmp_path / "no_such_tokenizer.model")
    config.data.train_paths = [str(tmp_path / "none-*.array_record")]
    config.init.workdir = _run_dir(tmp_path, **dict(config.model.to_dict(), activation="gelu"))
    with pytest.raises(ValueError, match="model.activation = 'gelu_tanh' here, 'gelu' in the run"):
        train_and_evaluate(config, str(tmp_path / "run"))
