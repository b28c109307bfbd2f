"""bigvl/convert against the reference libraries' own outputs (tests/fixtures/pretrained, written by
make_fixtures.py with torch, open_clip and transformers; these tests need only numpy/safetensors).

- parity: every imported fixture computes the reference's L2-normalised image and text embeddings
  to ≤ 1e-5 (float32), and its logit scale / bias exactly;
- export: the exported key names and shapes are the reference's own state-dict listing, the
  tensors are the reference file's bit for bit, and export → import gives back the same params;
- the CLI: import to a workdir, `bigvl.load` it, export it back.
"""
import json
import os

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained")
# name: (source, path, open_clip model JSON, reference outputs)
CASES = {
    "openclip_quickgelu": ("open_clip", "openclip_quickgelu.safetensors", "openclip_quickgelu.json",
                           "openclip_quickgelu"),
    "openclip_gelu_bidir": ("open_clip", "openclip_gelu_bidir.safetensors", "openclip_gelu_bidir.json",
                            "openclip_gelu_bidir"),
    "hf_clip": ("hf", "hf_clip", None, "hf_clip"),
    "hf_siglip": ("hf", "hf_siglip", None, "hf_siglip"),
    "big_vision_siglip": ("big_vision", "big_vision_siglip.npz", None, "hf_siglip"),
}
EXPORT_TO = {"openclip_quickgelu": "open_clip", "openclip_gelu_bidir": "open_clip", "hf_clip": "hf",
             "hf_siglip": "hf", "big_vision_siglip": "hf"}


def fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module")
def imported():
    """{case: (config, flat params)} of every fixture, imported once."""
    from bigvl.convert.importer import import_checkpoint
    out = {}
    for name, (source, path, model_json, _) in CASES.items():
        out[name] = import_checkpoint(source, fixture(path), model_json and fixture(model_json))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_model_computes_the_reference_embeddings(imported, name):
    import jax

    from bigvl.convert.layout import unflatten
    from bigvl.models import TwoTower, build_model
    config, flat = imported[name]
    ref = np.load(fixture(CASES[name][3] + ".npz"))
    model, params = build_model(config.model), {"params": unflatten(flat)}
    z_img = jax.jit(lambda p, x: model.apply(p, x, method=TwoTower.encode_image))(params, ref["images"])
    z_txt = jax.jit(lambda p, t: model.apply(p, t, method=TwoTower.encode_text))(params, ref["tokens"])
    assert np.abs(np.asarray(z_img) - ref["image_embeds"]).max() <= 1e-5
    assert np.abs(np.asarray(z_txt) - ref["text_embeds"]).max() <= 1e-5
    assert flat["log_logit_scale"] == ref["log_logit_scale"].reshape(())
    if "logit_bias" in ref:
        assert flat["logit_bias"] == ref["logit_bias"]


def test_import_infers_the_architecture_options(imported):
    quick, bidir = imported["openclip_quickgelu"][0].model, imported["openclip_gelu_bidir"][0].model
    assert (quick.activation, bidir.activation, quick.layer_norm_eps) == ("quick_gelu", "gelu", 1e-5)
    assert (quick.text.causal, quick.text.pool, bidir.text.causal, bidir.text.pool) == (True, "eos", False, "last")
    assert (quick.image.ln_pre, bidir.image.ln_pre, bidir.text.proj_bias) == (True, False, True)
    siglip = imported["hf_siglip"][0].model
    assert (siglip.activation, siglip.layer_norm_eps, siglip.image.pool, siglip.image.pixel_mean) == (
        "gelu_tanh", 1e-6, "map", (0.5, 0.5, 0.5))
    assert siglip.bias_init == -5.0 and not siglip.text.mask_pads


def test_big_vision_scanned_layout_without_prefix_imports_the_same_params(imported, tmp_path):
    """The scanned `encoderblock/...` [L, ...] layout, keys without 'params/': the same params, bitwise."""
    import re

    from bigvl.convert.importer import import_checkpoint
    with np.load(fixture("big_vision_siglip.npz")) as npz:
        flat = {k[len("params/"):]: npz[k] for k in npz.files}
    scanned, blocks = {}, {}
    for key, value in flat.items():
        m = re.match(r"(.*)/encoderblock_(\d+)/(.*)", key)
        if m:
            blocks.setdefault(f"{m.group(1)}/encoderblock/{m.group(3)}", {})[int(m.group(2))] = value
        else:
            scanned[key] = value
    scanned.update({k: np.stack([v[i] for i in sorted(v)]) for k, v in blocks.items()})
    np.savez(tmp_path / "scanned.npz", **scanned)
    _, params = import_checkpoint("big_vision", str(tmp_path / "scanned.npz"))
    want = imported["big_vision_siglip"][1]
    assert sorted(params) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(params[key], want[key])


def _reference_tensors(name):
    from safetensors.numpy import load_file
    source, path, _, _ = CASES[name]
    if source == "hf":
        return load_file(fixture(os.path.join(path, "model.safetensors")))
    if source == "open_clip":
        return load_file(fixture(path))
    return None


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_matches_the_reference_listing_and_round_trips_bitwise(imported, name, tmp_path):
    from safetensors.numpy import load_file

    from bigvl.convert.export import export_params
    from bigvl.convert.importer import import_checkpoint
    config, flat = imported[name]
    target = EXPORT_TO[name]
    out = os.environ.get("BIGVL_EXPORT_DIR") or str(tmp_path)  # make_fixtures.py --check-exports reads them
    path = os.path.join(out, name)
    files = export_params(config, flat, target, path)
    tensors = load_file(files[0])
    with open(fixture("state_dict_keys.json")) as f:
        listing = json.load(f)["hf_siglip" if name == "big_vision_siglip" else name]
    assert {k: list(v.shape) for k, v in tensors.items()} == listing
    reference = _reference_tensors(name)
    if reference is not None:
        for key, value in reference.items():
            np.testing.assert_array_equal(tensors[key], value, err_msg=key)
    config2, back = import_checkpoint(target, path)
    if name != "big_vision_siglip":
        assert config2.model.to_dict() == config.model.to_dict()
    assert sorted(back) == sorted(flat)
    for key in flat:
        np.testing.assert_array_equal(back[key], flat[key], err_msg=key)


def test_the_reference_libraries_loaded_the_exports():
    """make_fixtures.py --check-exports: open_clip.create_model('local-dir:...') and transformers'
    from_pretrained loaded bigvl's exports of every fixture and reproduced the reference outputs."""
    with open(fixture("exported_check.json")) as f:
        check = json.load(f)
    assert sorted(check) == sorted(CASES)
    assert all(err <= 1e-6 for case in check.values() for err in case.values())


def test_hf_clip_exports_to_open_clip_and_back(imported, tmp_path):
    """Across formats: an HF CLIP → open_clip state dict → bigvl gives the same params bitwise."""
    from bigvl.convert.export import export_params
    from bigvl.convert.importer import import_checkpoint
    config, flat = imported["hf_clip"]
    export_params(config, flat, "open_clip", str(tmp_path / "clip"))
    _, back = import_checkpoint("open_clip", str(tmp_path / "clip"))
    for key in flat:
        np.testing.assert_array_equal(back[key], flat[key], err_msg=key)


def test_a_bigvl_native_export_computes_the_same_in_open_clip_and_hf(tmp_path):
    """make_native_fixture.py: open_clip (`local-dir:`) and transformers (`from_pretrained`) loaded bigvl's
    export of a bigvl-native model (tanh GELU, LayerNorm eps 1e-6, x/127.5 − 1, sentencepiece EOS 3) and
    computed bigvl's embeddings; today's exporter writes those very files, and they import back bitwise."""
    import hashlib

    import jax
    from safetensors.numpy import load_file

    from bigvl.convert.export import export_params
    from bigvl.convert.importer import import_checkpoint
    from bigvl.convert.layout import unflatten
    from bigvl.convert.workdir import model_config
    from bigvl.models import TwoTower, build_model
    with open(fixture("bigvl_native.json")) as f:
        record = json.load(f)
    with open(fixture("bigvl_native_ref.json")) as f:
        built = json.load(f)
    assert built["open_clip"]["gelu"] == "GELU(approximate='tanh')" and built["open_clip"]["ln_pre_eps"] == 1e-6
    assert (built["hf"]["hidden_act"], built["hf"]["layer_norm_eps"]) == ("gelu_pytorch_tanh", 1e-6)
    config = model_config(record["model"])
    assert (config.model.activation, config.model.layer_norm_eps, config.model.text.eos_id) == ("gelu_tanh", 1e-6, 3)
    flat = load_file(fixture("bigvl_native.safetensors"))
    inputs, ref = np.load(fixture("bigvl_native_inputs.npz")), np.load(fixture("bigvl_native_ref.npz"))
    model, params = build_model(config.model), {"params": unflatten(flat)}
    z_img = np.asarray(jax.jit(lambda p, x: model.apply(p, x, method=TwoTower.encode_image))(params, inputs["images"]))
    z_txt = np.asarray(jax.jit(lambda p, t: model.apply(p, t, method=TwoTower.encode_text))(params, inputs["tokens"]))
    for lib in ("open_clip", "hf"):
        assert np.abs(z_img - ref[f"{lib}_image"]).max() <= 1e-5, lib
        assert np.abs(z_txt - ref[f"{lib}_text"]).max() <= 1e-5, lib
    # eps 1e-5 or exact GELU would move the embeddings past the tolerance: the fixture tells them apart
    assert all(v > 1e-5 for moved in record["moved_by_other_options"].values() for v in moved.values())
    for target in ("open_clip", "hf"):
        files = export_params(config, flat, target, str(tmp_path / target))
        assert hashlib.sha256(open(files[0], "rb").read()).hexdigest() == record[f"{target}_weights_sha256"]
        assert json.load(open(files[1])) == record[f"{target}_config"]
        config2, back = import_checkpoint(target, str(tmp_path / target))
        assert (config2.model.activation, config2.model.layer_norm_eps, config2.model.text.eos_id) == (
            "gelu_tanh", 1e-6, 3)
        for key in flat:
            np.testing.assert_array_equal(back[key], flat[key], err_msg=key)


def test_gap_pooled_runs_do_not_export_and_say_why(tmp_path):
    from safetensors.numpy import load_file

    from bigvl.convert.export import export_params
    from bigvl.convert.workdir import model_config
    with open(fixture("bigvl_native.json")) as f:
        record = json.load(f)
    overrides = json.loads(json.dumps(record["model"]))
    overrides["image"]["pool"] = "gap"
    flat = load_file(fixture("bigvl_native.safetensors"))
    del flat["image/cls_token"]
    flat["image/pos_embedding"] = flat["image/pos_embedding"][1:]
    for target, why in (("open_clip", "always prepends a class token"), ("hf", "CLIPModel pools the class token")):
        with pytest.raises(ValueError, match=f"model.image.pool = 'gap' has no .*{why}"):
            export_params(model_config(overrides), flat, target, str(tmp_path / target))
    overrides = json.loads(json.dumps(record["model"]))
    overrides["image"]["stem"] = "conv"  # the conv stem has no equivalent either
    for target in ("open_clip", "hf"):
        with pytest.raises(ValueError, match="model.image.stem = 'conv' has no .*one linear map"):
            export_params(model_config(overrides), load_file(fixture("bigvl_native.safetensors")), target,
                          str(tmp_path / target))


def test_cli_import_load_and_export(tmp_path, capsys):
    """`python -m bigvl.convert import` → `bigvl.load` → embeddings as the reference → export back bitwise."""
    from safetensors.numpy import load_file

    from bigvl.api import load
    from bigvl.convert.__main__ import main
    workdir = str(tmp_path / "wd")
    assert main(["import", "--from", "open_clip", "--in", fixture("openclip_quickgelu.safetensors"), "--model-config",
                 fixture("openclip_quickgelu.json"), "--tokenizer", fixture("bpe_simple_vocab_16e6.txt.gz"),
                 "--out", workdir]) == 0
    run = load(workdir)
    ref = np.load(fixture("openclip_quickgelu.npz"))
    z = run.model.apply({"params": run.params}, ref["images"], ref["tokens"])
    assert np.abs(np.asarray(z["image_embeds"]) - ref["image_embeds"]).max() <= 1e-5
    assert main(["export", "--workdir", workdir, "--to", "open_clip", "--out", str(tmp_path / "x")]) == 0
    exported = load_file(tmp_path / "x" / "open_clip_model.safetensors")
    original = load_file(fixture("openclip_quickgelu.safetensors"))
    assert sorted(exported) == sorted(original)
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key])
    assert main(["import", "--from", "open_clip", "--in", fixture("openclip_quickgelu.safetensors"),
                 "--out", workdir]) == 2
    assert "does not record its activation" in capsys.readouterr().err
    from bigvl.config import apply_overrides, base_config, split_overrides
    from bigvl.convert.workdir import finetune_flags
    config = base_config()  # `flags` words give any training config the imported architecture
    apply_overrides(config, split_overrides(finetune_flags(workdir)))
    assert config.model.to_dict() == {**run.config.model.to_dict(), "decoder": config.model.decoder.to_dict()}
    assert config.init.workdir == os.path.abspath(workdir) and config.data.tokenizer.endswith(".txt.gz")


def test_import_errors_name_the_fault(tmp_path):
    from safetensors.numpy import load_file, save_file

    from bigvl.convert.importer import import_checkpoint
    sd = load_file(fixture("openclip_quickgelu.safetensors"))
    save_file({**sd, "visual.extra": np.zeros(3, np.float32)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="does not know, e.g. \\['visual.extra'\\]"):
        import_checkpoint("open_clip", str(tmp_path / "extra.safetensors"), fixture("openclip_quickgelu.json"))
    del sd["visual.ln_post.bias"]
    save_file(sd, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="'visual.ln_post.bias' is missing"):
        import_checkpoint("open_clip", str(tmp_path / "missing.safetensors"), fixture("openclip_quickgelu.json"))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        os.makedirs(tmp_path / "bert")
        (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
        save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "bert" / "model.safetensors"))
        import_checkpoint("hf", str(tmp_path / "bert"))
    (tmp_path / "m.pt").write_bytes(b"not a pickle")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="torch is not installed"):
            import_checkpoint("open_clip", str(tmp_path / "m.pt"))


@pytest.mark.slow
def test_long_clip_finetunes_from_an_imported_open_clip(tmp_path):
    """Long-CLIP (recipe `long`) from an imported 77-position open_clip CLIP: 77 → 248 positions,
    rows 0–19 bitwise the imported ones after training, the stretched rows trained, loss finite."""
    import math

    from bigvl.config import apply_overrides, split_overrides
    from bigvl.convert.__main__ import main
    from bigvl.convert.workdir import finetune_flags
    from bigvl.data.world import build_world
    from bigvl.inference.run import load_run
    from bigvl.models.pretrained import stretch_positions
    from bigvl.train.loop import train_and_evaluate
    from tests.helpers.tiny import TINY_WORLD, tiny_config
    world = build_world(tmp_path / "world", **{**TINY_WORLD, "vocab_size": 320})  # ids < the fixture's 320
    imported = str(tmp_path / "imported")
    assert main(["import", "--from", "open_clip", "--in", fixture("openclip_quickgelu.safetensors"),
                 "--model-config", fixture("openclip_quickgelu.json"), "--tokenizer", str(world / "tokenizer.model"),
                 "--set", "model.text.eos_id=3", "--set", "model.text.bos_id=2", "--set", "model.text.pad_id=0",
                 "--out", imported]) == 0
    config = tiny_config(world, total_steps=2, ckpt_steps=2, **{
        "init.stretch_keep": 20, "optim.freeze_text_positions": 20,
        "data.caption_strategy": "long", "loss.multi_text": "long_clip", "loss.pca_dim": 4})
    # the imported architecture (QuickGELU, eps 1e-5, ...), tokenizer and init: `python -m bigvl.convert flags`
    apply_overrides(config, split_overrides(finetune_flags(imported, skip=["model.text.context_length"])))
    config.model.text.context_length = 248
    assert (config.model.activation, config.init.workdir) == ("quick_gelu", os.path.abspath(imported))
    metrics = train_and_evaluate(config, str(tmp_path / "long"))
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    source = np.asarray(load_run(imported).params["text"]["pos_embedding"])
    tuned = np.asarray(load_run(str(tmp_path / "long")).params["text"]["pos_embedding"])
    assert source.shape == (77, 32) and tuned.shape == (248, 32)
    np.testing.assert_array_equal(tuned[:20], source[:20])
    stretched = stretch_positions(source, 248, keep=20)
    assert not np.allclose(tuned[20:], stretched[20:])  # the stretched rows did train
    assert np.abs(tuned[20:] - stretched[20:]).max() < 0.1  # ... starting from the stretch


@pytest.mark.parametrize("name", ["ViT-B-16", "ViT-L-14"])
def test_full_size_open_clip_layouts_map_onto_bigvl_shapes(name):
    """open_clip's own ViT-B-16 / ViT-L-14 key listings (no weights): the inferred config builds a model
    with open_clip's parameter count (149,620,737 for B/16), and every key maps onto a bigvl param of
    the model's shape (shapes only, through jax.eval_shape)."""
    import jax

    from bigvl.convert import open_clip
    from bigvl.convert.workdir import model_config
    from bigvl.models import build_model, dummy_inputs, param_path
    with open(fixture("real_size_listings.json")) as f:
        real = json.load(f)[name]
    sd = {k: jax.ShapeDtypeStruct(tuple(s), np.float32) for k, s in real["listing"].items()}
    sd["logit_scale"] = np.float32(np.log(100.0))
    config = model_config(open_clip.infer_config(sd, real["model_cfg"]))
    model = build_model(config.model)
    shapes = jax.eval_shape(lambda r: model.init(r, *dummy_inputs(config.model))["params"], jax.random.key(0))
    want = {param_path(p): tuple(v.value.shape if hasattr(v, "value") else v.shape)
            for p, v in jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda x: hasattr(x, "value"))[0]}
    assert sum(int(np.prod(s)) for s in want.values()) == real["num_params"]
    got, keys = {}, set()
    for entry in open_clip.table(config.model):
        out = jax.eval_shape(entry.to_bigvl, *(sd[k] for k in entry.keys))
        got.update({p: tuple(o.shape) for p, o in zip(entry.paths, out)})
        keys.update(entry.keys)
    assert got == want
    assert keys == set(real["listing"])
