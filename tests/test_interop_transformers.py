"""End to end through the user's path against transformers' own pipeline (slow tier; needs torch and
transformers, in the test extra): an HF SigLIP / CLIP directory with its tokenizer and image processor
files → `bigvl convert import` → `python -m bigvl.evaluate --suite folder --predictions` on an image
folder of several sizes → per-image class probabilities equal to what transformers' processor + model
compute on the same files (1e-5). The tokenizer is made here: a T5-style sentencepiece model for SigLIP
(pad 0, eos 1, unk 2, no bos: its checkpoints pad with 1), the fixture's BPE tokenizer.json for CLIP.
"""
from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image


def fixture(name: str) -> str:
    return os.path.join(os.path.dirname(__file__), "fixtures", "pretrained", name)

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CLASSES = ["red circle", "blue square", "green star"]
SIZES = [(32, 32), (48, 40), (40, 56), (64, 64), (33, 90)]  # (width, height): squashed / cropped differently
T5_IDS = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)


def image_folder(root) -> list[str]:
    """ROOT/<class>/<i>.png random images of SIZES, classnames.txt; the image paths in sorted order."""
    rng = np.random.default_rng(0)
    paths = []
    for c, name in enumerate(CLASSES):
        os.makedirs(root / f"c{c}")
        for i, (w, h) in enumerate(SIZES):
            path = str(root / f"c{c}" / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    return paths


def evaluate_folder(workdir: str, root, *overrides: str) -> tuple[list[str], np.ndarray]:
    """`python -m bigvl.evaluate --suite folder --predictions`: (image paths, probabilities [N, C])."""
    from bigvl.evaluate import main
    assert main(["--workdir", workdir, "--suite", "folder", "--data_dir", str(root), "--predictions", *overrides]) == 0
    with open(os.path.join(workdir, "eval", "folder_predictions.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "label", "predicted", *CLASSES]
    return [r[0] for r in rows[1:]], np.array([[float(v) for v in r[3:]] for r in rows[1:]])


def hf_probabilities(model, processor, paths, sigmoid: bool, attention_mask: bool = True) -> np.ndarray:
    """transformers: processor(text=prompts, images=files) → model → probabilities [N, C]; the processor's
    attention mask (transformers 5's SiglipProcessor returns one) dropped unless `attention_mask`."""
    prompts = [f"a photo of a {c}." for c in CLASSES]  # the folder suite's default template
    images = [Image.open(p).convert("RGB") for p in paths]
    inputs = processor(text=prompts, images=images, padding="max_length", return_tensors="pt")
    if not attention_mask:
        inputs.pop("attention_mask", None)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image.double().numpy()
    if sigmoid:
        return 1.0 / (1.0 + np.exp(-logits))
    return np.exp(logits - logits.max(1, keepdims=True)) / np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)


def exported(workdir: str, out, kind: str):
    """`bigvl convert export --to hf`, loaded back by transformers: (model, processor) of the files it wrote
    (its tokenizer and preprocessor_config.json; the PIL image processor: no torchvision here)."""
    from bigvl.convert.__main__ import main as convert
    assert convert(["export", "--workdir", workdir, "--to", "hf", "--out", str(out)]) == 0
    if kind == "siglip":
        return (transformers.SiglipModel.from_pretrained(out).eval(),
                transformers.SiglipProcessor(image_processor=transformers.SiglipImageProcessorPil.from_pretrained(out),
                                             tokenizer=transformers.SiglipTokenizer.from_pretrained(out)))
    return (transformers.CLIPModel.from_pretrained(out).eval(),
            transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessorPil.from_pretrained(out),
                                       tokenizer=transformers.CLIPTokenizer.from_pretrained(out)))


def test_siglip_zero_shot_through_evaluate_equals_transformers(tmp_path):
    """SigLIP as published (pads = id 1, unmasked, text lower-cased without punctuation, whole image
    resized bicubic) and, with `model.text.mask_pads=true, pool=final`, transformers given an attention mask."""
    from bigvl.convert.__main__ import main as convert
    from bigvl.data.tokenizer import train_tokenizer
    words = ["a photo of a red circle", "a blue square", "green star", "the photo of a triangle"]
    spm = train_tokenizer(words * 20, tmp_path / "spiece", vocab_size=300, **T5_IDS)
    hf = tmp_path / "hf"
    shutil.copytree(fixture("hf_siglip"), hf)
    transformers.SiglipTokenizer(vocab_file=str(spm), model_max_length=77).save_pretrained(hf)  # the fixture: 77 positions
    transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(hf)
    workdir = str(tmp_path / "wd")
    assert convert(["import", "--from", "hf", "--in", str(hf), "--out", workdir]) == 0
    paths = image_folder(tmp_path / "images")

    names, probs = evaluate_folder(workdir, tmp_path / "images")
    assert names == paths
    model = transformers.SiglipModel.from_pretrained(hf).eval()
    processor = transformers.SiglipProcessor(image_processor=transformers.SiglipImageProcessorPil.from_pretrained(hf),
                                             tokenizer=transformers.SiglipTokenizer.from_pretrained(hf))
    want = hf_probabilities(model, processor, paths, sigmoid=True, attention_mask=False)
    print("siglip max |bigvl - transformers|", np.abs(probs - want).max())
    np.testing.assert_allclose(probs, want, atol=1e-5, rtol=0)

    _, masked = evaluate_folder(workdir, tmp_path / "images", "--config.model.text.mask_pads=true",
                                "--config.model.text.pool=final")
    want_masked = hf_probabilities(model, processor, paths, sigmoid=True, attention_mask=True)
    print("siglip (attention mask) max |bigvl - transformers|", np.abs(masked - want_masked).max(),
          "; masked vs unmasked", np.abs(want_masked - want).max())
    np.testing.assert_allclose(masked, want_masked, atol=1e-5, rtol=0)
    assert np.abs(want_masked - want).max() > 1e-3  # the option matters: the two behaviours differ

    # and back out: the export carries the tokenizer and the image preprocessing transformers then uses
    model, processor = exported(workdir, tmp_path / "exported", "siglip")
    np.testing.assert_allclose(hf_probabilities(model, processor, paths, sigmoid=True, attention_mask=False), probs,
                               atol=1e-5, rtol=0)


def test_clip_zero_shot_through_evaluate_equals_transformers(tmp_path):
    """HF CLIP with its BPE tokenizer.json and CLIPImageProcessor (shorter side bicubic, centre crop)."""
    from bigvl.convert.__main__ import main as convert
    hf = tmp_path / "hf"
    tokenizer = transformers.CLIPTokenizer(tokenizer_file=fixture("hf_clip_tokenizer/tokenizer.json"),
                                           pad_token="<|endoftext|>", model_max_length=77)
    vocab = len(tokenizer)
    bos, eos = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=24)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformers.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(hf)
    workdir = str(tmp_path / "wd")
    assert convert(["import", "--from", "hf", "--in", str(hf), "--out", workdir]) == 0
    paths = image_folder(tmp_path / "images")
    names, probs = evaluate_folder(workdir, tmp_path / "images")
    assert names == paths
    processor = transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessorPil.from_pretrained(hf),
                                           tokenizer=transformers.CLIPTokenizer.from_pretrained(hf))
    want = hf_probabilities(model, processor, paths, sigmoid=False)
    print("clip max |bigvl - transformers|", np.abs(probs - want).max())
    np.testing.assert_allclose(probs, want, atol=1e-5, rtol=0)
    model, processor = exported(workdir, tmp_path / "exported", "clip")
    np.testing.assert_allclose(hf_probabilities(model, processor, paths, sigmoid=False), probs, atol=1e-5, rtol=0)


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize("name,source,path,ref", [("hf_clip", "hf", "hf_clip", "hf_clip"),
                                                  ("hf_siglip", "hf", "hf_siglip", "hf_siglip"),
                                                  ("big_vision_siglip", "big_vision", "big_vision_siglip.npz", "hf_siglip")])
def test_transformers_loads_the_exports_of_the_imported_fixtures(name, source, path, ref, tmp_path):
    """make_fixtures.py --check-exports, re-run here for transformers (open_clip's half needs torchvision,
    which this CPU torch lacks; its stored result stays in tests/test_convert.py): each fixture imported,
    exported with `bigvl convert export --to hf`, loaded with from_pretrained, run on the fixture's inputs:
    the reference library's own outputs, written when the fixture was made."""
    from bigvl.convert.__main__ import main as convert
    workdir, out = str(tmp_path / "wd"), str(tmp_path / "hf")
    assert convert(["import", "--from", source, "--in", fixture(path), "--out", workdir]) == 0
    assert convert(["export", "--workdir", workdir, "--to", "hf", "--out", out]) == 0
    want = np.load(fixture(f"{ref}.npz"))
    cls = transformers.CLIPModel if name == "hf_clip" else transformers.SiglipModel
    mean, std = (CLIP_MEAN, CLIP_STD) if name == "hf_clip" else ((0.5,) * 3, (0.5,) * 3)
    pixels = torch.from_numpy(((want["images"] / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    model = cls.from_pretrained(out).eval()
    with torch.no_grad():
        zi = model.get_image_features(pixel_values=pixels)
        zt = model.get_text_features(input_ids=torch.from_numpy(want["tokens"].astype(np.int64)))
    zi, zt = (torch.nn.functional.normalize(getattr(z, "pooler_output", z), dim=-1).numpy() for z in (zi, zt))
    assert np.abs(zi - want["image_embeds"]).max() <= 1e-5 and np.abs(zt - want["text_embeds"]).max() <= 1e-5
