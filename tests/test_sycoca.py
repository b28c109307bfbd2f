"""SyCoCa: attentive masking, the masked-pixel input, the MIM term against a float64 reference,
8 devices == 1, and the model + objective wired (coca recipe sizes, tiny towers)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.config import base_config
from bigvl.losses.objective import Objective
from bigvl.models.build import build_model, dummy_inputs
from bigvl.models.sycoca import attentive_mask, mask_pixels, masked_patch_error
from bigvl.parallel.mesh import make_mesh
from tests.helpers.tiny import tiny_towers


def test_attentive_mask_takes_the_lowest_scores():
    scores = np.random.default_rng(0).normal(size=(5, 16))
    mask = np.asarray(attentive_mask(jnp.float32(scores), 0.25))
    for row, m in zip(scores, mask):
        assert set(np.flatnonzero(m)) == set(np.argsort(row)[:4])


def test_mask_pixels_greys_exactly_the_masked_patches():
    images = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    mask = np.zeros((2, 4), bool)
    mask[0, 1], mask[1, 2] = True, True  # patch 1 = rows 0-3, cols 4-7; patch 2 = rows 4-7, cols 0-3
    got = np.asarray(mask_pixels(jnp.asarray(images), jnp.asarray(mask), 4))
    want = images.copy()
    want[0, 0:4, 4:8] = 128
    want[1, 4:8, 0:4] = 128
    np.testing.assert_array_equal(got, want)


def _reference_mim_loss(predicted, target, mask):
    """float64: mean over the batch's masked patches of the per-value squared error."""
    errors = [np.mean((predicted[b, n] - target[b, n]) ** 2) for b in range(mask.shape[0])
              for n in range(mask.shape[1]) if mask[b, n]]
    return np.mean(errors)


def _mim_inputs(b=8, n=6, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, n, d)), rng.normal(size=(b, n, d)), rng.random(size=(b, n)) < 0.5


def _mim_loss(predicted, target, mask):
    error, count = masked_patch_error(predicted, target, mask)
    return jnp.sum(error) / jnp.maximum(jnp.sum(count), 1.0)


def test_mim_term_matches_float64_reference():
    predicted, target, mask = _mim_inputs()
    np.testing.assert_allclose(_mim_loss(jnp.float32(predicted), jnp.float32(target), mask),
                               _reference_mim_loss(predicted, target, mask), rtol=1e-5)


def test_mim_term_on_eight_devices_equals_one():
    predicted, target, mask = _mim_inputs(b=16, seed=1)
    args = (np.float32(predicted), np.float32(target), mask)
    step = jax.jit(jax.value_and_grad(_mim_loss))
    single_value, single_grad = step(*jax.device_put(args, jax.devices()[0]))
    rows = NamedSharding(make_mesh({"data": 8}), P(("data", "fsdp")))
    sharded = [jax.device_put(a, rows) for a in args]
    assert len(sharded[0].sharding.device_set) == 8
    value, grad = step(*sharded)
    np.testing.assert_allclose(value, single_value, rtol=1e-6)
    np.testing.assert_allclose(grad, single_grad, rtol=1e-6, atol=1e-8)


def _sycoca_config(ratio=0.5, weight=1.0):
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=4, vocab_size=64, context_length=8, image={"pool": "gap"})
    c.model.update(kind="coca", embed_dim=16)
    c.model.decoder.update(depth=1, context_length=8, num_queries=4, pooler_heads=2, mim_mask_ratio=ratio)
    c.data.caption_strategy = "recap"
    c.loss.mim_weight = weight
    return c


def test_sycoca_outputs_mim_terms_and_trains_the_head():
    c = _sycoca_config()
    model, objective = build_model(c.model), Objective.from_config(c)
    images = jax.random.randint(jax.random.key(0), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    tokens = jax.random.randint(jax.random.key(1), (2, 1, 8), 4, 64)
    params = nn.unbox(model.init(jax.random.key(2), images, tokens[:, 0])["params"])
    assert {"q", "kv", "out", "pixels"} <= set(params["mim_head"])

    def loss(params):
        outputs = objective.model_outputs(model, params, {"image": images, "tokens": tokens})
        total, terms, _ = objective(outputs, {}, {})
        return total, (terms, outputs)

    (total, (terms, outputs)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    np.testing.assert_array_equal(outputs["mim_patches"], [8.0, 8.0])  # half of the 16 patches
    assert set(terms) >= {"contrastive_loss", "caption_loss", "mim_loss"} and np.isfinite(total)
    assert float(jnp.abs(grads["mim_head"]["pixels"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("ratio,weight", [(0.5, 0.0), (0.0, 1.0)])
def test_sycoca_keys_go_together(ratio, weight):
    with pytest.raises(ValueError, match="loss.mim_weight"):
        Objective.from_config(_sycoca_config(ratio, weight))


def test_plain_coca_is_unchanged_by_the_new_keys():
    c = _sycoca_config(0.0, 0.0)
    model = build_model(c.model)
    images, tokens = dummy_inputs(c.model, 1)
    assert "mim_head" not in jax.eval_shape(model.init, jax.random.key(0), images, tokens)["params"]
