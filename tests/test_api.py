"""The notebook API against hand computations on a trained tiny run: zero-shot probabilities with the
run's own logit scale (softmax runs) or scale and bias (sigmoid runs); grayscale and RGBA images."""
import copy
import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

import bigvl.api as api
from bigvl.inference.images import prepare_images

CLASSNAMES = ["red circle", "blue square", "green star"]
TEMPLATES = ("a photo of a {}.", "a drawing of a {}.")


@pytest.fixture(scope="module")
def run(tiny_run):
    return api.load(str(tiny_run))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 40, 48, 3), dtype=np.uint8)


def _hand_cosines(run, images):
    """[N, C] cosines of the images with each class's template-averaged text embedding, by loops."""
    image_embeds = run.encoder.encode_images(prepare_images(images, run.encoder.image_size)).astype(np.float64)
    cos = np.zeros((len(images), len(CLASSNAMES)))
    for c, name in enumerate(CLASSNAMES):
        mean = np.zeros(image_embeds.shape[1])
        for template in TEMPLATES:
            e = run.encoder.encode_texts([template.format(name)])[0].astype(np.float64)
            mean += e / np.linalg.norm(e) / len(TEMPLATES)
        for n in range(len(images)):
            cos[n, c] = image_embeds[n] @ mean / np.linalg.norm(mean)
    return cos


def _with(run, loss=None, **params):
    config = copy.deepcopy(run.config)
    if loss:
        config.loss.name = loss
    return dataclasses.replace(run, config=config, params={**run.params, **{
        k: jnp.asarray(v, jnp.float32) for k, v in params.items()}})


def test_softmax_run_uses_its_own_logit_scale(run, images):
    scale = math.exp(float(run.params["log_logit_scale"]))
    assert run.config.loss.name == "softmax" and abs(scale - 100.0) > 1.0  # not the fixed 100 of CLIP's release
    cos = _hand_cosines(run, images)
    for r, s in ((run, scale), (_with(run, log_logit_scale=math.log(500.0)), 100.0)):  # capped at max_logit_scale
        assert r.config.model.max_logit_scale == 100.0
        want = np.array([[math.exp(s * v) for v in row] for row in cos])
        want /= want.sum(axis=1, keepdims=True)
        labels, probs = api.zero_shot_classify(r, images, CLASSNAMES, TEMPLATES)
        assert probs.shape == (5, 3) and labels.shape == (5,)
        np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(labels, cos.argmax(axis=1))


@pytest.mark.parametrize("loss", ["sigmoid", "sigmoid_ring"])
def test_sigmoid_run_gives_independent_sigmoid_probabilities_with_its_bias(run, images, loss):
    sig = _with(run, loss=loss, log_logit_scale=math.log(7.0), logit_bias=-2.5)
    cos = _hand_cosines(run, images)
    want = np.array([[1 / (1 + math.exp(-(7.0 * v - 2.5))) for v in row] for row in cos])
    labels, probs = api.zero_shot_classify(sig, images, CLASSNAMES, TEMPLATES)
    np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(labels, cos.argmax(axis=1))
    assert not np.allclose(probs.sum(axis=1), 1.0)  # per-class probabilities, not a distribution


def test_grayscale_and_rgba_images_are_made_rgb():
    """Grayscale [H,W] and [H,W,1]: the value in every channel; RGBA [H,W,4]: the alpha dropped (PIL's
    convert('RGB'), as the training data decoder does)."""
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(30, 20), dtype=np.uint8)
    rgba = rng.integers(0, 256, size=(24, 36, 4), dtype=np.uint8)
    out = prepare_images([gray, gray[..., None], rgba], 16)
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.uint8
    want_gray = prepare_images([np.repeat(gray[..., None], 3, axis=2)], 16)[0]
    np.testing.assert_array_equal(out[0], want_gray)
    np.testing.assert_array_equal(out[1], want_gray)
    np.testing.assert_array_equal(out[2], prepare_images([rgba[..., :3].copy()], 16)[0])
    assert prepare_images(np.stack([gray, gray]), 16).shape == (2, 16, 16, 3)  # a batch of grayscale images


def test_an_image_of_another_shape_is_named():
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image 1 has shape \(8, 8, 2\)"):
        prepare_images([good, np.zeros((8, 8, 2), np.uint8)], 4)
    with pytest.raises(ValueError, match=r"image 0 has shape \(8,\)"):
        prepare_images([np.zeros(8, np.uint8)], 4)


def test_api_takes_grayscale_and_rgba_images(run, images):
    gray = images[0, :, :, 0]
    rgba = np.concatenate([images[1], np.full((40, 48, 1), 9, np.uint8)], axis=2)
    got = api.encode_images(run, [gray, rgba])
    want = api.encode_images(run, [np.repeat(gray[..., None], 3, axis=2), images[1]])
    np.testing.assert_allclose(got, want, atol=1e-6)
    labels, probs = api.zero_shot_classify(run, [gray, rgba], CLASSNAMES)
    assert labels.shape == (2,) and probs.shape == (2, 3)


def test_patch_similarity_is_each_patch_cosine_with_its_images_text(run, images):
    """Against loops over the encoder's own patch and text embeddings: map[n, y, x] = <patch y·g+x of image n, text n>."""
    texts = ["a red circle", "a blue square", "a green star", "a red circle", "a blue star"]
    patches = run.encoder.encode_patches(prepare_images(images, run.encoder.image_size)).astype(np.float64)
    text_embeds = run.encoder.encode_texts(texts).astype(np.float64)
    grid = int(round(math.sqrt(patches.shape[1])))
    want = np.zeros((len(images), grid, grid))
    for n in range(len(images)):
        for y in range(grid):
            for x in range(grid):
                want[n, y, x] = sum(patches[n, y * grid + x, e] * text_embeds[n, e] for e in range(patches.shape[2]))
    got = api.patch_similarity(run, images, texts)
    assert got.shape == (5, grid, grid) and grid > 1
    np.testing.assert_allclose(got, want, atol=1e-9)
    one = api.patch_similarity(run, images[:2], "a red circle")  # one text for every image
    np.testing.assert_allclose(one[0], want[0], atol=1e-9)
    np.testing.assert_allclose(one[1], api.patch_similarity(run, images[1:2], ["a red circle"])[0], atol=1e-9)
    with pytest.raises(ValueError, match="5 images but 2 texts"):
        api.patch_similarity(run, images, texts[:2])


def test_caption_is_the_decoders_and_refuses_a_run_without_a_decoder(run, images):
    import bigvl
    import bigvl.inference.decoding as decoding
    assert bigvl.caption is decoding.caption and bigvl.patch_similarity is api.patch_similarity
    assert bigvl.plots.image_grid is not None  # imported on first use
    with pytest.raises(ValueError, match="no caption decoder"):
        bigvl.caption(run, images)
