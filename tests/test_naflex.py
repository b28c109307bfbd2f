"""NaFlex: the grid choice, the patch layout, the position-grid resize and the masks of the image tower."""
import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from bigvl.config import base_config
from bigvl.data.naflex import choose_grid, naflex_batch, naflex_image
from bigvl.models.build import build_model, dummy_inputs
from bigvl.models.naflex import NaflexImages, resize_positions
from bigvl.parallel.mesh import DEFAULT_RULES
from tests.helpers.tiny import tiny_towers

PATCH, SIZE = 4, 16  # a 4×4 position grid


def brute_force_grid(height, width, budget):
    """Every (h, w) in [1, L]²: keep those that fill the budget (neither side can grow), then the closest aspect."""
    best = None
    for h in range(1, budget + 1):
        for w in range(1, budget + 1):
            if h * w > budget or (h + 1) * w <= budget or h * (w + 1) <= budget:
                continue
            key = (abs(np.log(w / h) - np.log(width / height)), -h * w, -h)
            best = min(best, (key, (h, w))) if best else (key, (h, w))
    return best[1]


@pytest.mark.parametrize("budget", [1, 7, 24, 64, 196])
def test_closest_aspect_grid_is_the_brute_force_optimum(budget):
    for height, width in [(100, 100), (90, 160), (160, 90), (300, 100), (37, 999), (480, 640), (5, 3)]:
        assert choose_grid(height, width, 16, budget) == brute_force_grid(height, width, budget), (height, width)
    assert choose_grid(64, 64, 16, 196) == (14, 14) and choose_grid(64, 64, 16, 200) == (14, 14)


def test_siglip2_grid_rule_keeps_the_scale_and_rounds_up():
    assert choose_grid(256, 256, 16, 256, "siglip2") == (16, 16)
    h, w = choose_grid(100, 300, 16, 64, "siglip2")
    assert h * w <= 64 and (h + 1) * (w + 1) > 64 and w > h
    with pytest.raises(ValueError, match="model.image.naflex_grid"):
        choose_grid(10, 10, 4, 16, "square")


def test_naflex_image_lays_patches_out_row_major():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3 * PATCH, 5 * PATCH, 3), np.uint8)  # already the (3, 5) grid of budget 16
    patches, shape = naflex_image(image, PATCH, 16)
    assert shape.tolist() == [3, 5] and patches.shape == (16, PATCH * PATCH * 3) and patches.dtype == np.uint8
    for r in range(3):
        for c in range(5):
            np.testing.assert_array_equal(patches[r * 5 + c], image[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH].ravel())
    assert not patches[15:].any()


@pytest.mark.parametrize("shape", [(2, 3), (4, 4), (7, 2), (1, 9), (3, 6)])  # shrink, keep, grow, mixed
def test_resize_positions_matches_pil_antialiased_bilinear(shape):
    grid = np.random.default_rng(1).normal(size=(4, 4, 3)).astype(np.float32)
    h, w = shape
    got = np.asarray(resize_positions(grid, np.asarray([shape], np.int32), 24))[0]
    want = np.stack([np.asarray(Image.fromarray(grid[..., c], mode="F").resize((w, h), Image.BILINEAR))
                     for c in range(3)], axis=-1)
    np.testing.assert_allclose(got[:h * w], want.reshape(h * w, 3), rtol=1e-5, atol=1e-5)


def naflex_model(pool):
    c = base_config()
    tiny_towers(c.model, image_size=SIZE, patch_size=PATCH, image={"pool": pool, "naflex": True})
    c.model.embed_dim = 16
    return c.model


def init(model_cfg, seed=0):
    images, tokens = dummy_inputs(model_cfg, 1)
    return nn.unbox(build_model(model_cfg).init(jax.random.key(seed), images, tokens)["params"])


IMAGES = [np.random.default_rng(2).integers(0, 256, size, np.uint8) for size in [(20, 50, 3), (48, 16, 3), (30, 30, 3)]]


@pytest.mark.parametrize("pool", ["map", "gap", "cls"])
def test_padded_batch_gives_each_image_alone(pool):
    cfg = naflex_model(pool)
    model, params = build_model(cfg), init(cfg)
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_image))
    batch = naflex_batch(IMAGES, PATCH, 24)
    padded = np.asarray(encode(NaflexImages(batch["image_patches"], batch["image_spatial_shapes"])))
    for i, (h, w) in enumerate(batch["image_spatial_shapes"][:2]):  # the wide and the tall image
        alone = batch["image_patches"][i:i + 1, :h * w]  # no padding at all: its own length
        want = np.asarray(encode(NaflexImages(alone, batch["image_spatial_shapes"][i:i + 1])))[0]
        np.testing.assert_allclose(padded[i], want, rtol=1e-5, atol=1e-6)
    garbage = batch["image_patches"].copy()
    for i, (h, w) in enumerate(batch["image_spatial_shapes"]):
        garbage[i, h * w:] = 255  # what sits in the padding must not matter
    again = encode(NaflexImages(garbage, batch["image_spatial_shapes"]))
    np.testing.assert_allclose(np.asarray(again), padded, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", ["map", "cls"])
def test_full_grid_equals_the_square_model(pool):
    """The NaFlex tower has the square model's params, and on a square image at the full G×G grid (the
    resize is then the identity) gives the square model's embeddings."""
    cfg = naflex_model(pool)
    square = cfg.copy_and_resolve_references()
    square.image.naflex = False
    params, square_params = init(cfg), init(square)
    jax.tree.map(np.testing.assert_array_equal, params, square_params)
    image = IMAGES[2][:SIZE, :SIZE]
    model, square_model = build_model(cfg), build_model(square)
    batch = naflex_batch([image], PATCH, (SIZE // PATCH) ** 2)
    assert batch["image_spatial_shapes"].tolist() == [[4, 4]]
    got = model.apply({"params": params}, NaflexImages(batch["image_patches"], batch["image_spatial_shapes"]),
                      method=model.encode_image)
    want = square_model.apply({"params": params}, image[None], method=square_model.encode_image)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_naflex_sharded_matches_single_device():
    cfg = naflex_model("map")
    model, params = build_model(cfg), init(cfg)
    batch = naflex_batch([IMAGES[i % 3] for i in range(8)], PATCH, 24)
    images = NaflexImages(batch["image_patches"], batch["image_spatial_shapes"])
    fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode_image))
    expected = fn(params, images)
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    abstract = jax.eval_shape(lambda: build_model(cfg).init(jax.random.key(0), *dummy_inputs(cfg, 1))["params"])
    param_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, DEFAULT_RULES)
    data = NamedSharding(mesh, P(("data", "fsdp")))
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        sharded = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode_image),
                          in_shardings=(param_shardings, data))
        got = sharded(jax.device_put(params, param_shardings), jax.device_put(images, data))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_naflex_refuses_the_captioners():
    cfg = naflex_model("map")
    cfg.kind = "coca"
    with pytest.raises(ValueError, match="model.image.naflex"):
        build_model(cfg)


def test_pack_carries_the_grid_through_one_array():
    from bigvl.models.naflex import pack, unpack
    patches, shape = naflex_image(IMAGES[0], PATCH, 300)  # a grid side > 255: both bytes of h and w used
    packed = np.stack([pack(patches, shape), pack(patches, (2, 280))])
    assert packed.shape == (2, 301, PATCH * PATCH * 3) and packed.dtype == np.uint8
    images = unpack(packed)
    np.testing.assert_array_equal(images.patches, np.stack([patches] * 2))
    assert np.asarray(images.spatial_shapes).tolist() == [shape.tolist(), [2, 280]]


def test_encoder_encodes_prepared_images_at_any_length():
    """An Encoder (8-device mesh, chunks of 8) moved to another length: `prepare` + `encode_images` equal the
    model on `naflex_batch` at that length."""
    from bigvl.inference.encoder import make_encoder
    from bigvl.parallel.mesh import make_mesh
    cfg = naflex_model("map")
    model, params = build_model(cfg), init(cfg)
    encoder = make_encoder(model, params, None, cfg, make_mesh({"data": 8}), DEFAULT_RULES, 8)
    assert encoder.max_patches == 16  # (image_size / patch)² when model.image.max_patches is 0
    pils = [Image.fromarray(image) for image in IMAGES]
    assert encoder.prepare(pils[0]).shape == (17, PATCH * PATCH * 3)
    at = encoder.with_length(24)
    got = at.encode_images(np.stack([at.prepare(p) for p in pils]))
    batch = naflex_batch(IMAGES, PATCH, 24)
    want = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_image))(
        NaflexImages(batch["image_patches"], batch["image_spatial_shapes"]))
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
