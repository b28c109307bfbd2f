"""SigLIP 2's local views (bigvl/data/local_views.py): shapes, the whole image at scale (1, 1) equal to a plain PIL
resize, and crop areas inside the requested range (measured on an image whose pixels encode their coordinates)."""
import numpy as np
from PIL import Image

from bigvl.data.local_views import local_views


def test_local_views_shape_and_full_scale():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    views = local_views(image, 3, 8, (1.0, 1.0), rng)
    assert views.shape == (3, 8, 8, 3) and views.dtype == np.uint8
    whole = np.asarray(image.resize((8, 8), Image.BILINEAR))
    assert all(np.array_equal(v, whole) for v in views)


def test_local_crop_areas_fall_in_the_scale_range():
    side = 200
    ys, xs = np.mgrid[0:side, 0:side]
    coords = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)  # red = x, green = y (side < 256)
    views = local_views(Image.fromarray(coords), 32, 16, (0.05, 0.4), np.random.default_rng(1))
    for v in views.astype(np.float64):
        width = v[..., 0].max() - v[..., 0].min() + 1
        height = v[..., 1].max() - v[..., 1].min() + 1
        assert 0.05 * 0.8 <= width * height / side ** 2 <= 0.4 * 1.1  # bilinear sampling trims ≤ a pixel per side
