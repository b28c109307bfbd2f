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
    from_pretrained loaded bigvl's exports of every fixture and reproduced the reference outputs. A record
    of that run: transformers' half is re-run against today's exporter in the slow tier
    (tests/test_interop_transformers.py); open_clip's is not (it needs torchvision, absent here)."""
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
        want = record[f"{target}_config"]
        if target == "open_clip":  # written since the fixture: open_clip's PreprocessCfg fields for the input
            want["preprocess_cfg"].update(resize_mode="shortest", interpolation="bilinear")
        assert json.load(open(files[1])) == want
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


def _tiny_workdir(path, image=None, text=None):
    """A bigvl workdir of a freshly initialised tiny two-tower model (the native fixture's, with overrides)."""
    import flax.linen as nn
    import jax

    from bigvl.convert.layout import flatten
    from bigvl.convert.workdir import model_config, write_workdir
    from bigvl.models import build_model, dummy_inputs
    with open(fixture("bigvl_native.json")) as f:
        overrides = json.load(f)["model"]
    overrides["image"].update(image or {})
    overrides["text"].update(text or {})
    config = model_config(overrides)
    model = build_model(config.model)
    params = jax.tree.map(np.asarray, model.init(jax.random.key(0), *dummy_inputs(config.model))["params"])
    write_workdir(str(path), config, flatten(nn.unbox(params)), None)
    return str(path)


def test_exports_carry_the_tokenizer_and_preprocessing_or_refuse(tmp_path, capsys):
    """A run that tokenises with its own sentencepiece model: the open_clip export (whose loaders would
    silently use CLIP's BPE) is refused in one line unless --hf_tokenizer_name names a hub tokenizer; the
    HF export writes preprocessor_config.json from model.image and says it wrote no tokenizer; a run with
    open_clip's own BPE file exports as is, with its resize rule and interpolation in preprocess_cfg."""
    from bigvl.convert.__main__ import main
    from bigvl.data.tokenizer import train_tokenizer
    workdir = _tiny_workdir(tmp_path / "wd")
    spm = train_tokenizer(["a red circle", "a blue square"] * 20, tmp_path / "tok", vocab_size=280)
    config = json.load(open(os.path.join(workdir, "config.json")))
    config["data"]["tokenizer"] = str(spm)
    json.dump(config, open(os.path.join(workdir, "config.json"), "w"))
    assert main(["export", "--workdir", workdir, "--to", "open_clip", "--out", str(tmp_path / "oc")]) == 2
    assert "is not open_clip's bpe_simple_vocab_16e6.txt.gz" in capsys.readouterr().err
    assert main(["export", "--workdir", workdir, "--to", "open_clip", "--out", str(tmp_path / "oc"),
                 "--hf_tokenizer_name", "me/my-tokenizer"]) == 0
    oc = json.load(open(tmp_path / "oc" / "open_clip_config.json"))
    assert oc["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "me/my-tokenizer"
    assert main(["export", "--workdir", workdir, "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    processor = json.load(open(tmp_path / "hf" / "preprocessor_config.json"))
    size = config["model"]["image"]["image_size"]
    assert (processor["size"], processor["crop_size"], processor["resample"]) == (
        {"shortest_edge": size}, {"height": size, "width": size}, 2)  # crop_square, bilinear
    assert not os.path.exists(tmp_path / "hf" / "tokenizer_config.json")
    config["data"]["tokenizer"] = fixture("bpe_simple_vocab_16e6.txt.gz")
    config["model"]["image"].update(resize="squash", interpolation="bicubic")
    json.dump(config, open(os.path.join(workdir, "config.json"), "w"))
    assert main(["export", "--workdir", workdir, "--to", "open_clip", "--out", str(tmp_path / "oc2")]) == 0
    oc = json.load(open(tmp_path / "oc2" / "open_clip_config.json"))
    assert "hf_tokenizer_name" not in oc["model_cfg"]["text_cfg"]
    assert (oc["preprocess_cfg"]["resize_mode"], oc["preprocess_cfg"]["interpolation"]) == ("squash", "bicubic")


def test_open_clip_export_writes_an_mlp_ratio_open_clip_rebuilds(tmp_path):
    """open_clip builds the MLP as int(width * mlp_ratio): 120 / 88 * 88 = 119.99.. would build 119."""
    from bigvl.convert.__main__ import main
    assert int(88 * (120 / 88)) != 120
    workdir = _tiny_workdir(tmp_path / "wd", image={"width": 88, "num_heads": 2, "mlp_dim": 120},
                            text={"width": 88, "num_heads": 2, "mlp_dim": 120})
    assert main(["export", "--workdir", workdir, "--to", "open_clip", "--out", str(tmp_path / "oc")]) == 0
    cfg = json.load(open(tmp_path / "oc" / "open_clip_config.json"))["model_cfg"]
    for tower in ("vision_cfg", "text_cfg"):
        assert int(cfg[tower]["width"] * cfg[tower]["mlp_ratio"]) == 120, tower


# The key sets of the published config.json files (the values bigvl reads; transformers' bookkeeping
# keys such as torch_dtype / transformers_version / initializer_factor left out). No verbatim copy
# could be fetched here: SigLIP's two are transcribed from third-party copies of their key sets
# (base: text_config names hidden_size / intermediate_size / num_attention_heads / vocab_size only,
# vision_config only patch_size; so400m: sizes and depths, no vocab_size, hidden_act, layer_norm_eps
# or max_position_embeddings), CLIP's from its fully written-out config (every key explicit).
PUBLISHED_HF_CONFIGS = {
    "google/siglip-base-patch16-224": {
        "architectures": ["SiglipModel"], "model_type": "siglip",
        "text_config": {"hidden_size": 768, "intermediate_size": 3072, "model_type": "siglip_text_model",
                        "num_attention_heads": 12, "vocab_size": 32000},
        "vision_config": {"model_type": "siglip_vision_model", "patch_size": 16}},
    "google/siglip-so400m-patch14-384": {
        "architectures": ["SiglipModel"], "model_type": "siglip",
        "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "model_type": "siglip_text_model",
                        "num_attention_heads": 16, "num_hidden_layers": 27},
        "vision_config": {"hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "patch_size": 14}},
    "openai/clip-vit-base-patch16": {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 512,
        "logit_scale_init_value": 2.6592,
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                        "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408,
                        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2,
                        "pad_token_id": 1, "projection_dim": 512, "model_type": "clip_text_model"},
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                          "num_hidden_layers": 12, "image_size": 224, "patch_size": 16, "hidden_act": "quick_gelu",
                          "layer_norm_eps": 1e-05, "projection_dim": 512, "model_type": "clip_vision_model"}},
    "a CLIPConfig() saved bare": {"architectures": ["CLIPModel"], "model_type": "clip"},
}
# (activation, ln eps, (image size, patch, width, depth, heads, mlp), (vocab, context, width, depth, heads, mlp), embed)
PUBLISHED_HF_WANT = {
    "google/siglip-base-patch16-224": ("gelu_tanh", 1e-6, (224, 16, 768, 12, 12, 3072),
                                       (32000, 64, 768, 12, 12, 3072), 768),
    "google/siglip-so400m-patch14-384": ("gelu_tanh", 1e-6, (384, 14, 1152, 27, 16, 4304),
                                         (32000, 64, 1152, 27, 16, 4304), 1152),
    "openai/clip-vit-base-patch16": ("quick_gelu", 1e-5, (224, 16, 768, 12, 12, 3072),
                                     (49408, 77, 512, 12, 8, 2048), 512),
    "a CLIPConfig() saved bare": ("quick_gelu", 1e-5, (224, 32, 768, 12, 12, 3072),
                                  (49408, 77, 512, 12, 8, 2048), 512),
}


def _published_state_dict(cfg, want):
    """The few published-size tensors infer_config reads (zero-copy broadcasts)."""
    vocab, embed = want[3][0], want[4]
    zeros = lambda *shape: np.broadcast_to(np.float32(0), shape)  # noqa: E731
    sd = {"text_model.embeddings.token_embedding.weight": zeros(vocab, want[3][2]),
          "logit_scale": np.full((1,), np.log(10.0), np.float32)}
    if cfg["model_type"] == "siglip":
        sd.update({"text_model.head.weight": zeros(embed, want[3][2]), "logit_bias": np.full((1,), -10.0, np.float32)})
    else:
        sd["visual_projection.weight"] = zeros(embed, want[2][2])
    return sd


@pytest.mark.parametrize("name", sorted(PUBLISHED_HF_CONFIGS))
def test_hf_published_configs_take_their_model_types_own_defaults(name):
    """A sparse SigLIP config.json gets SigLIP's defaults (gelu_pytorch_tanh, 1e-6, 12 layers, 64
    positions), not CLIP's, and no KeyError; CLIP keeps quick_gelu, 1e-5, 77."""
    from bigvl.convert import hf
    from bigvl.convert.workdir import model_config
    cfg, want = PUBLISHED_HF_CONFIGS[name], PUBLISHED_HF_WANT[name]
    m = model_config(hf.infer_config(json.loads(json.dumps(cfg)), _published_state_dict(cfg, want))).model
    assert (m.activation, m.layer_norm_eps) == want[:2]
    assert (m.image.image_size, m.image.patch_size, m.image.width, m.image.depth, m.image.num_heads,
            m.image.mlp_dim) == want[2]
    assert (m.text.vocab_size, m.text.context_length, m.text.width, m.text.depth, m.text.num_heads,
            m.text.mlp_dim) == want[3]
    assert m.embed_dim == want[4]


@pytest.mark.parametrize("name", ["hf_siglip", "hf_clip"])
def test_hf_sparse_config_imports_and_computes_the_reference(name, tmp_path):
    """The fixtures with every key that equals its transformers default removed from config.json
    import through the user's path to the same model: the same embeddings as the reference."""
    import shutil

    import jax

    from bigvl.convert.importer import import_checkpoint
    from bigvl.convert.layout import unflatten
    from bigvl.models import TwoTower, build_model
    shutil.copytree(fixture(name), tmp_path / name)
    with open(tmp_path / name / "config.json") as f:
        cfg = json.load(f)
    for tower in ("vision_config", "text_config"):
        for key in ("hidden_act", "layer_norm_eps", "attention_dropout", "num_channels", "vision_use_head"):
            cfg[tower].pop(key, None)
    with open(tmp_path / name / "config.json", "w") as f:
        json.dump(cfg, f)
    config, flat = import_checkpoint("hf", str(tmp_path / name))
    siglip = name == "hf_siglip"
    assert (config.model.activation, config.model.layer_norm_eps) == (
        ("gelu_tanh", 1e-6) if siglip else ("quick_gelu", 1e-5))
    ref = np.load(fixture(name + ".npz"))
    model, params = build_model(config.model), {"params": unflatten(flat)}
    z_img = jax.jit(lambda p, x: model.apply(p, x, method=TwoTower.encode_image))(params, ref["images"])
    z_txt = jax.jit(lambda p, t: model.apply(p, t, method=TwoTower.encode_text))(params, ref["tokens"])
    assert np.abs(np.asarray(z_img) - ref["image_embeds"]).max() <= 1e-5
    assert np.abs(np.asarray(z_txt) - ref["text_embeds"]).max() <= 1e-5


def test_hf_config_with_a_foreign_tower_model_type_is_one_clear_error():
    from bigvl.convert import hf
    cfg = json.loads(json.dumps(PUBLISHED_HF_CONFIGS["google/siglip-base-patch16-224"]))
    cfg["text_config"]["model_type"] = "clip_text_model"
    with pytest.raises(ValueError, match="text_config.model_type 'clip_text_model' in a 'siglip' model"):
        hf.infer_config(cfg, _published_state_dict(cfg, PUBLISHED_HF_WANT["google/siglip-base-patch16-224"]))


def test_open_clip_import_says_which_activation_it_assumed(tmp_path, capsys):
    """OpenAI's weights under open_clip's ViT-B-16.json (no quick_gelu) would silently become exact GELU."""
    from safetensors.numpy import load_file, save_file

    from bigvl.convert.__main__ import main
    sd = load_file(fixture("openclip_quickgelu.safetensors"))
    openai = {**sd, "input_resolution": np.array(32), "context_length": np.array(77), "vocab_size": np.array(320)}
    save_file(openai, str(tmp_path / "openai.safetensors"))
    mj = json.load(open(fixture("openclip_quickgelu.json")))
    del mj["quick_gelu"]
    (tmp_path / "plain.json").write_text(json.dumps(mj))
    args = ["import", "--from", "open_clip", "--model-config", str(tmp_path / "plain.json")]
    assert main([*args, "--in", str(tmp_path / "openai.safetensors"), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "OpenAI CLIP weights" in err and "exact GELU" in err and "--set model.activation=quick_gelu" in err
    assert len(err.strip().splitlines()) == 2  # the warning + the no-tokenizer note
    assert main([*args, "--in", fixture("openclip_quickgelu.safetensors"), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "sets no quick_gelu: assumed exact GELU" in err and "-quickgelu" in err
    assert main([*args, "--set", "model.activation=quick_gelu", "--in", fixture("openclip_quickgelu.safetensors"),
                 "--out", str(tmp_path / "c")]) == 0
    assert "quick_gelu" not in capsys.readouterr().err
    # OpenAI's state dict without a model JSON: QuickGELU, said so
    assert main(["import", "--from", "open_clip", "--in", str(tmp_path / "openai.safetensors"), "--set",
                 "model.image.num_heads=2", "--set", "model.text.num_heads=2", "--out", str(tmp_path / "d")]) == 0
    assert "assumed model.activation=quick_gelu" in capsys.readouterr().err
    assert json.load(open(tmp_path / "d" / "config.json"))["model"]["activation"] == "quick_gelu"


def test_a_torchscript_archive_is_named_with_how_to_convert_it(tmp_path, capsys):
    """OpenAI's ViT-B-16.pt is a TorchScript zip (code/, constants.pkl): one line, not torch.load's traceback."""
    import zipfile

    from bigvl.convert.__main__ import main
    path = tmp_path / "ViT-B-16.pt"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("ViT-B-16/data.pkl", "ViT-B-16/constants.pkl", "ViT-B-16/code/__torch__/model.py",
                     "ViT-B-16/data/0", "ViT-B-16/version"):
            z.writestr(name, b"x")
    assert main(["import", "--from", "open_clip", "--in", str(path), "--out", str(tmp_path / "wd")]) == 2
    err = capsys.readouterr().err
    assert "is a TorchScript archive" in err and "state_dict()" in err and len(err.strip().splitlines()) == 1


def test_an_hf_import_without_tokenizer_says_so_and_loads_for_images(tmp_path, capsys):
    """hf_clip holds config.json + model.safetensors only: the import says no tokenizer was found, and the
    workdir loads for images; texts raise one error naming data.tokenizer."""
    import bigvl
    from bigvl.convert.__main__ import main
    workdir = str(tmp_path / "wd")
    assert main(["import", "--from", "hf", "--in", fixture("hf_clip"), "--out", workdir]) == 0
    err = capsys.readouterr().err
    assert "no tokenizer found" in err and "--tokenizer" in err and len(err.strip().splitlines()) == 1
    run = bigvl.load(workdir)
    size = run.config.model.image.image_size
    z = bigvl.encode_images(run, np.zeros((2, size, size, 3), np.uint8))
    assert z.shape == (2, run.config.model.embed_dim) and np.isfinite(z).all()
    with pytest.raises(ValueError, match="no tokenizer .*data.tokenizer"):
        bigvl.encode_texts(run, ["a photo"])


# SigLIP's sentencepiece model (T5's): pad 0, eos 1, unk 2, no bos; its checkpoints pad with 1
T5_IDS = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)


@pytest.mark.parametrize("source,path", [("hf", "hf_siglip"), ("big_vision", "big_vision_siglip.npz")])
def test_an_imported_siglip_is_scored_as_siglip(source, path, tmp_path):
    """An imported SigLIP is a sigmoid-loss run: `bigvl.zero_shot_classify` gives each class its own
    sigmoid(scale·cos + bias), computed here from the run's embeddings and params, not a softmax."""
    import bigvl
    from bigvl.convert.__main__ import main
    from bigvl.data.tokenizer import train_tokenizer
    words = ["a photo of a red circle", "a blue square", "green star", "yellow triangle", "the purple cat"]
    tokenizer = train_tokenizer(words * 20, tmp_path / "tok", vocab_size=300, **T5_IDS)
    workdir = str(tmp_path / "wd")
    assert main(["import", "--from", source, "--in", fixture(path), "--out", workdir,
                 "--tokenizer", str(tokenizer)]) == 0
    run = bigvl.load(workdir)
    assert run.config.loss.name == "sigmoid"
    size = run.config.model.image.image_size
    images = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    classes = ["red circle", "blue square", "green star"]
    _, probs = bigvl.zero_shot_classify(run, images, classes, templates=("{}",))
    cos = bigvl.encode_images(run, images).astype(np.float64) @ bigvl.encode_texts(run, classes).astype(np.float64).T
    scale = float(np.exp(np.asarray(run.params["log_logit_scale"])))
    want = 1.0 / (1.0 + np.exp(-(scale * cos + float(np.asarray(run.params["logit_bias"])))))
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
