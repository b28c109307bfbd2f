"""SigLIP 2 NaFlex against transformers (slow tier; needs torch and transformers): a random-init Siglip2Model
saved with its image processor → `bigvl convert import` → `bigvl.load` → `bigvl.encode_images(run, images,
max_patches=L)` on image files of three aspect ratios at two lengths, vs transformers'
Siglip2ImageProcessorPil + Siglip2Model on the same files; text embeddings on the same token ids; and
`bigvl convert export --to hf` loaded back by transformers with the same tensors.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PATCH, GRID = 4, 4  # 16 learned positions
LENGTHS = (12, 30)  # one below the position grid (shrink), one above (grow)
SIZES = [(60, 20), (18, 50), (33, 37)]  # (width, height): wide, tall, near square


@pytest.fixture(scope="module")
def siglip2(tmp_path_factory):
    """(HF model directory, the model) of a random-init tiny Siglip2Model with its processor files."""
    from transformers import Siglip2Config, Siglip2Model
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil
    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = Siglip2Config(text_config=dict(vocab_size=64, max_position_embeddings=8, **common),
                           vision_config=dict(num_patches=GRID * GRID, patch_size=PATCH, **common))
    model = Siglip2Model(config).eval()
    with torch.no_grad():  # a logit bias and scale away from their init, and non-trivial positions
        model.logit_bias.fill_(-3.0)
        model.vision_model.embeddings.position_embedding.weight.normal_()
    path = tmp_path_factory.mktemp("siglip2_hf")
    model.save_pretrained(path)
    Siglip2ImageProcessorPil(patch_size=PATCH, max_num_patches=LENGTHS[0]).save_pretrained(path)
    return path, model


def image_files(root) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        paths.append(str(root / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_siglip2_naflex_import_matches_transformers(siglip2, tmp_path):
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    import bigvl
    from bigvl.convert.__main__ import main as convert
    from bigvl.data.naflex import choose_grid
    hf_dir, model = siglip2
    workdir = str(tmp_path / "run")
    assert convert(["import", "--from", "hf", "--in", str(hf_dir), "--out", workdir]) == 0
    run = bigvl.load(workdir)
    image = run.config.model.image
    assert (image.naflex, image.naflex_grid, image.max_patches, image.image_size) == (True, "siglip2", LENGTHS[0], 16)
    paths = image_files(tmp_path)
    pils = [Image.open(p).convert("RGB") for p in paths]
    for length in LENGTHS:
        got = bigvl.encode_images(run, [np.asarray(p) for p in pils], max_patches=length)
        inputs = Siglip2ImageProcessorPil(patch_size=PATCH, max_num_patches=length)(images=pils, return_tensors="pt")
        assert inputs["spatial_shapes"].tolist() == [list(choose_grid(p.height, p.width, PATCH, length, "siglip2"))
                                                     for p in pils]
        with torch.no_grad():
            want = model.get_image_features(**inputs)
        want = getattr(want, "pooler_output", want).numpy()
        want = want / np.linalg.norm(want, axis=-1, keepdims=True)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    side = bigvl.encode_images(run, [np.asarray(p) for p in pils], max_side=24)  # (24 / 4)² = 36 patches
    np.testing.assert_array_equal(side, bigvl.encode_images(run, [np.asarray(p) for p in pils], max_patches=36))
    ids = np.random.default_rng(1).integers(2, 64, (3, 8)).astype(np.int32)
    with torch.no_grad():
        want = model.get_text_features(input_ids=torch.as_tensor(ids, dtype=torch.long))
    want = getattr(want, "pooler_output", want).numpy()
    np.testing.assert_allclose(run.encoder.encode_tokens(ids), want / np.linalg.norm(want, axis=-1, keepdims=True),
                               rtol=1e-5, atol=2e-6)


def test_siglip2_naflex_export_round_trips_through_transformers(siglip2, tmp_path):
    from transformers import AutoImageProcessor, Siglip2Model

    from bigvl.convert.__main__ import main as convert
    hf_dir, model = siglip2
    workdir, out = str(tmp_path / "run"), tmp_path / "hf"
    assert convert(["import", "--from", "hf", "--in", str(hf_dir), "--out", workdir]) == 0
    assert convert(["export", "--workdir", workdir, "--to", "hf", "--out", str(out)]) == 0
    back = Siglip2Model.from_pretrained(out).eval()
    want = model.state_dict()
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), want[key].numpy(), err_msg=key)
    processor = AutoImageProcessor.from_pretrained(out)
    assert (processor.patch_size, processor.max_num_patches) == (PATCH, LENGTHS[0])
