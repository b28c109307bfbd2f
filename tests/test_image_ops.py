"""Decoding and crops: sizes, range of crop scales, no flips, corrupt bytes rejected."""
import io

import numpy as np
import pytest
from PIL import Image

from bigvl.data.image_ops import center_resize, decode_image, random_resized_crop


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
