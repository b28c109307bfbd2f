"""Decoding and crops: sizes, range of crop scales, no flips, corrupt bytes rejected; every image
mode made RGB as PIL's own convert("RGB") does (open_clip's and CLIP_benchmark's pipelines)."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from bigvl.data.image_ops import center_resize, decode_image, random_resized_crop, rgb_image
from bigvl.evaluators.suites.images import to_pil
from bigvl.inference.images import prepare_images


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_crop_never_flips_left_right():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32, 0] = 255  # left half red, right half blue
    image[:, 32:, 2] = 255
    decoded = decode_image(_png(image))
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = random_resized_crop(decoded, 32, 0.8, rng).astype(int)
        assert out[:, 0, 0].mean() > out[:, 0, 2].mean()  # left edge stays red
        assert out[:, -1, 2].mean() > out[:, -1, 0].mean()  # right edge stays blue


def test_crop_shape_and_center_resize():
    decoded = decode_image(_png(np.full((48, 80, 3), 7, np.uint8)))
    assert random_resized_crop(decoded, 24, 0.5, np.random.default_rng(1)).shape == (24, 24, 3)
    out = center_resize(decoded, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and (out == 7).all()


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0garbage", _png(np.zeros((8, 8, 3), np.uint8))[:30]])
def test_corrupt_bytes_raise_value_error(data):
    with pytest.raises(ValueError, match="undecodable image"):
        decode_image(data)


class _BoxRecorder:
    """Stands in for a PIL image of `size` (width, height): records the crop box it is resized from."""

    def __init__(self, size):
        self.size, self.boxes = size, []

    def resize(self, size, resample, box):
        self.boxes.append(box)
        return np.zeros((size[1], size[0], 3), np.uint8)


def _boxes(size, min_scale, draws, seed, ratio=(3 / 4, 4 / 3)):
    image, rng = _BoxRecorder(size), np.random.default_rng(seed)
    for _ in range(draws):
        random_resized_crop(image, 8, min_scale, rng, ratio)
    return np.asarray(image.boxes, np.float64)  # [draws, 4]: x0, y0, x1, y1


def _accepted_scale_cdf(f, min_scale, ratio):
    """CDF of the area fraction of the boxes kept, for a square image (derived by hand, not from the code).

    Draw f ~ U[min_scale, 1] and a log-uniform in [r0, r1] (r0 = 1/r1 < 1); the box
    S·sqrt(f a) × S·sqrt(f / a) fits iff f ≤ min(a, 1/a), i.e. |ln a| ≤ −ln f. So a draw is kept
    with probability 1 for f ≤ r0 and −ln f / ln r1 above; the kept f has density ∝ that (a
    redraw is independent). ∫ −ln f df = f − f ln f.
    """
    r0, c = ratio[0], np.log(ratio[1])
    low = np.clip(f, min_scale, r0) - min_scale
    g = lambda u: u - u * np.log(u)  # noqa: E731
    high = (g(np.clip(f, r0, 1.0)) - g(r0)) / c
    total = (r0 - min_scale) + (g(1.0) - g(r0)) / c
    return (low + high) / total


def test_random_resized_crop_box_distribution():
    """Over many draws: boxes inside the image, area fraction in [min_scale, 1], aspect ratio in
    the range, and the area fraction distributed as U[min_scale, 1] kept where the box fits (KS)."""
    ratio = (3 / 4, 4 / 3)
    # a non-square image: geometry only
    boxes = _boxes((640, 480), 0.3, 3000, seed=1, ratio=ratio)
    x0, y0, x1, y1 = boxes.T
    w, h = x1 - x0, y1 - y0
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 640).all() and (y1 <= 480).all()
    assert (w > 0).all() and (h > 0).all() and np.array_equal(boxes, np.round(boxes))
    fraction = w * h / (640 * 480)
    assert fraction.min() >= 0.3 * (1 - 0.01) and fraction.max() <= 1.0
    assert (w / h >= ratio[0] * (1 - 0.01)).all() and (w / h <= ratio[1] * (1 + 0.01)).all()  # ±1 px rounding
    # the box's position is uniform over the places it fits: offset / slack averages 1/2
    slack_x, slack_y = 640 - w, 480 - h
    assert abs(np.mean(x0[slack_x > 0] / slack_x[slack_x > 0]) - 0.5) < 0.03
    assert abs(np.mean(y0[slack_y > 0] / slack_y[slack_y > 0]) - 0.5) < 0.03
    assert (x0 == 0).any() and (x0 == slack_x).any() and (y0 == 0).any() and (y0 == slack_y).any()  # both ends

    # a large square image (rounding ≪ the test's resolution): the distribution of the area fraction
    n, min_scale, side = 20_000, 0.25, 10_000
    boxes = _boxes((side, side), min_scale, n, seed=2, ratio=ratio)
    fraction = np.sort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / side ** 2)
    cdf = _accepted_scale_cdf(fraction, min_scale, ratio)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.95 / np.sqrt(n), ks  # Kolmogorov–Smirnov at the 0.1% level (deterministic seed)
    # and plainly: below 3/4 every box fits, so equal-width bins hold equal counts there
    counts, _ = np.histogram(fraction, bins=10, range=(min_scale, 0.75))
    expected = n * _accepted_scale_cdf(np.float64(0.75), min_scale, ratio) / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), (counts, expected)
    # where every aspect fits (area fraction < 3/4) the aspect ratio is log-uniform over the range
    w, h = (boxes[:, 2] - boxes[:, 0]), (boxes[:, 3] - boxes[:, 1])
    always = w * h / side ** 2 < 0.74
    u = np.sort((np.log(w / h)[always] - np.log(ratio[0])) / (np.log(ratio[1]) - np.log(ratio[0])))
    m = len(u)
    ks = max(np.max(np.arange(1, m + 1) / m - u), np.max(u - np.arange(m) / m))
    assert ks < 1.95 / np.sqrt(m), ks


def test_random_resized_crop_falls_back_to_the_whole_image():
    """A 1000×10 strip has no box of aspect within [3/4, 4/3] covering half its area: whole image."""
    boxes = _boxes((1000, 10), 0.5, 20, seed=0)
    assert (boxes == [0, 0, 1000, 10]).all()


_RNG = np.random.default_rng(3)
_RGBA = Image.fromarray(_RNG.integers(0, 256, (9, 7, 4), dtype=np.uint8))  # W 7 × H 9, random alpha
_WIDE = Image.fromarray(_RNG.integers(0, 65536, (9, 7), dtype=np.uint16))  # I;16: most values > 255


def _with_transparency():
    """A palette image whose palette index 0 is transparent (PNG tRNS)."""
    image = _RGBA.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    image.info["transparency"] = 0
    return image


# (what, image in that mode, the formats it is stored in): one of each mode PIL converts to RGB.
MODES = [
    ("1", _RGBA.convert("1"), ["PNG", "TIFF"]),
    ("L", _RGBA.convert("L"), ["PNG", "JPEG"]),
    ("LA", _RGBA.convert("LA"), ["PNG", "TIFF"]),
    ("P", _RGBA.convert("P"), ["PNG", "GIF"]),
    ("P+transparency", _with_transparency(), ["PNG"]),
    ("PA", _RGBA.convert("PA"), ["TIFF"]),
    ("RGB", _RGBA.convert("RGB"), ["PNG", "JPEG"]),
    ("RGBA", _RGBA, ["PNG", "TIFF", "WEBP"]),
    ("RGBa", _RGBA.convert("RGBa"), []),
    ("CMYK", _RGBA.convert("CMYK"), ["JPEG", "TIFF"]),
    ("YCbCr", _RGBA.convert("YCbCr"), ["JPEG"]),  # a YCbCr TIFF does not round-trip in Pillow 12.3
    ("LAB", _RGBA.convert("LAB"), ["TIFF"]),
    ("HSV", _RGBA.convert("HSV"), []),
    ("I", _RGBA.convert("I"), ["TIFF"]),
    ("I;16", _WIDE, ["PNG", "TIFF"]),
    ("F", _RGBA.convert("F"), ["TIFF"]),
]


def _encode(image, fmt):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.save(buf, format=fmt, **({"transparency": image.info["transparency"]} if "transparency" in image.info
                                        else {}))
    return buf.getvalue()


def _reference(image):
    """What open_clip / CLIP_benchmark get: PIL's own convert("RGB"), as uint8 [H,W,3]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL: palette transparency is better converted to RGBA (they do not)
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("what, image, formats", MODES, ids=[m[0] for m in MODES])
def test_every_mode_is_made_rgb_as_pil_convert_does(what, image, formats):
    """A PIL image of each mode, and each file it is stored as: the three stages that read images
    (training data, evaluation suites, notebook inputs) give PIL's convert("RGB") of it, pixel for pixel."""
    want = _reference(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert rgb_image(image).mode == "RGB"
        np.testing.assert_array_equal(np.asarray(rgb_image(image)), want)
        np.testing.assert_array_equal(np.asarray(to_pil(image)), want)
        for fmt in formats:
            data = _encode(image, fmt)
            stored = Image.open(io.BytesIO(data))
            assert what.startswith(stored.mode) or fmt in ("JPEG", "WEBP", "GIF"), (fmt, stored.mode)
            want_file = _reference(stored)
            np.testing.assert_array_equal(np.asarray(decode_image(data)), want_file, err_msg=fmt)
            np.testing.assert_array_equal(np.asarray(to_pil(data)), want_file, err_msg=fmt)


def test_alpha_is_dropped_not_composited_and_16_bit_clips():
    """The behaviours that set PIL's convert apart from other choices, checked by hand: RGBA keeps its
    colour channels whatever the alpha (no compositing on white or black); I;16 values clip at 255."""
    rgba = np.asarray(_RGBA)
    np.testing.assert_array_equal(np.asarray(rgb_image(_RGBA)), rgba[..., :3])
    wide = np.asarray(_WIDE).astype(np.int64)
    np.testing.assert_array_equal(np.asarray(rgb_image(_WIDE)), np.repeat(np.minimum(wide, 255)[..., None], 3, 2)
                                  .astype(np.uint8))


@pytest.mark.parametrize("shape", [(9, 7), (9, 7, 1), (9, 7, 3), (9, 7, 4)])
def test_arrays_are_made_rgb_as_pil_convert_does(shape):
    """uint8 arrays (notebook inputs, TFDS images): grayscale repeated in R, G, B, alpha dropped;
    the same pixels in the evaluation suites and in the notebook's prepare_images."""
    array = _RNG.integers(0, 256, shape, dtype=np.uint8)
    channels = array.reshape(9, 7, -1)
    want = np.repeat(channels, 3, axis=2) if channels.shape[2] == 1 else channels[..., :3]
    np.testing.assert_array_equal(_reference(Image.fromarray(array if len(shape) == 2 or shape[2] != 1
                                                             else array[..., 0])), want)
    np.testing.assert_array_equal(np.asarray(rgb_image(array)), want)
    np.testing.assert_array_equal(np.asarray(to_pil(array)), want)
    np.testing.assert_array_equal(prepare_images([array], 7)[0], center_resize(Image.fromarray(want), 7))


@pytest.mark.parametrize("array, match", [(np.zeros((8, 8, 2), np.uint8), r"image 5 has shape \(8, 8, 2\)"),
                                          (np.zeros(8, np.uint8), r"image 5 has shape \(8,\)"),
                                          (np.zeros((8, 8, 3), np.float32), "image 5 has dtype float32")])
def test_other_arrays_are_named(array, match):
    with pytest.raises(ValueError, match=match):
        rgb_image(array, where=5)


def test_undecodable_bytes_are_named():
    with pytest.raises(ValueError, match=r"undecodable image shard-3/17 \("):
        decode_image(b"garbage", where="shard-3/17")
    with pytest.raises(ValueError, match=r"undecodable image a\.jpg \("):
        to_pil(b"garbage", where="a.jpg")


def test_eval_resize_rules_follow_their_libraries():
    """A 33 × 90 image into 32 px, each rule against PIL operations written out here: squash = the whole
    image resized; shorter_side = 33 → 32 wide, int(32·90/33) = 87 high, then a crop whose top is
    torchvision's round(55 / 2) = 28 (half to even) and transformers' 55 // 2 = 27; crop_square = the central
    33 × 33 square resized."""
    from bigvl.data.image_ops import eval_resize
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 33, 3), dtype=np.uint8))
    np.testing.assert_array_equal(eval_resize(image, 32, "squash", "bicubic"),
                                  np.asarray(image.resize((32, 32), Image.BICUBIC)))
    tall = np.asarray(image.resize((32, 87), Image.BICUBIC))
    np.testing.assert_array_equal(eval_resize(image, 32, "shorter_side", "bicubic"), tall[28:60])
    np.testing.assert_array_equal(eval_resize(image, 32, "shorter_side_hf", "bicubic"), tall[27:59])
    np.testing.assert_array_equal(eval_resize(image, 32), np.asarray(image.resize((32, 32), Image.BILINEAR,
                                                                                   box=(0, 28, 33, 61))))
    with pytest.raises(ValueError, match="model.image.resize"):
        eval_resize(image, 32, "longest")
