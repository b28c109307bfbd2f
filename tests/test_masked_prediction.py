"""SigLIP 2's masked prediction term (bigvl/losses/masked_prediction.py) against a float64 numpy reference from
iBOT's patch loss (Zhou et al. 2022, eq. 2: −Σ_masked P_t log P_s per image over its masked patches), the mask's
count and spread, and on 8 devices against one."""
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses.masked_prediction import masked_prediction_loss, random_patch_mask
from bigvl.parallel.mesh import make_mesh


def _log_softmax64(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference(student, teacher, mask, center, ts, tt):
    per_image = []
    for b in range(student.shape[0]):
        terms = [-np.sum(np.exp(_log_softmax64((teacher[b, n] - center) / tt)) * _log_softmax64(student[b, n] / ts))
                 for n in range(student.shape[1]) if mask[b, n]]
        per_image.append(np.mean(terms))
    return float(np.mean(per_image))


def _inputs(seed=0, b=8, n=12, k=10):
    rng = np.random.default_rng(seed)
    mask = np.asarray(random_patch_mask(jax.random.key(seed), b, n, 0.5))
    return (rng.normal(size=(b, n, k)).astype(np.float32), rng.normal(size=(b, n, k)).astype(np.float32), mask,
            rng.normal(scale=0.3, size=(k,)).astype(np.float32))


def test_masked_prediction_matches_float64_reference():
    student, teacher, mask, center = _inputs()
    for ts, tt in ((0.1, 0.04), (1.0, 0.5)):
        got = float(masked_prediction_loss(student, teacher, mask, center, ts, tt))
        np.testing.assert_allclose(got, reference(student, teacher, mask, center, ts, tt), rtol=2e-5)


def test_unmasked_patches_do_not_count():
    student, teacher, mask, center = _inputs(1)
    changed = np.where(mask[..., None], student, 100.0 * np.random.default_rng(5).normal(size=student.shape))
    np.testing.assert_allclose(float(masked_prediction_loss(changed.astype(np.float32), teacher, mask, center)),
                               float(masked_prediction_loss(student, teacher, mask, center)), rtol=1e-6)


def test_the_mask_hides_exactly_half_of_each_row_at_random_places():
    mask = np.asarray(random_patch_mask(jax.random.key(3), 64, 16, 0.5))
    assert (mask.sum(1) == 8).all()
    assert 0.35 < mask.mean(0).min() and mask.mean(0).max() < 0.65  # every place masked about half the time
    assert len({row.tobytes() for row in mask}) > 60


def test_masked_prediction_on_eight_devices_equals_one():
    student, teacher, mask, center = _inputs(2, b=16)
    fn = jax.jit(jax.value_and_grad(masked_prediction_loss))
    value, grad = fn(student, teacher, mask, center)
    mesh = make_mesh({"data": 8})
    rows = NamedSharding(mesh, P(("data", "fsdp")))
    args = [jax.device_put(x, rows) for x in (student, teacher, mask)] + [jax.device_put(center, NamedSharding(mesh, P()))]
    value8, grad8 = fn(*args)
    np.testing.assert_allclose(float(value8), float(value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad8), np.asarray(grad), rtol=1e-5, atol=1e-8)
