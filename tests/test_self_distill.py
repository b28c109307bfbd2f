"""SigLIP 2's self-distillation term (bigvl/losses/self_distill.py) against a float64 numpy reference written
from DINO's formulas (Caron et al. 2021, eq. 1–2 and its centering), and on 8 devices against one."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses.self_distill import self_distill_loss, update_center
from bigvl.parallel.mesh import make_mesh


def _softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(local, teacher, center, ts, tt):
    """H(P_t, P_s) = −Σ_k P_t log P_s per (image, crop), averaged; P_t = softmax((g_t − C)/τt), P_s = softmax(g_s/τs)."""
    pt = _softmax64((np.asarray(teacher, np.float64) - center) / tt)
    total, count = 0.0, 0
    for b in range(local.shape[0]):
        for m in range(local.shape[1]):
            ps = _softmax64(np.asarray(local[b, m], np.float64) / ts)
            total += -np.sum(pt[b] * np.log(ps))
            count += 1
    return total / count


def _inputs(seed=0, b=8, m=3, k=16):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(b, m, k)).astype(np.float32), rng.normal(size=(b, k)).astype(np.float32),
            rng.normal(scale=0.3, size=(k,)).astype(np.float32))


def test_self_distill_loss_matches_float64_reference():
    local, teacher, center = _inputs()
    for ts, tt in ((0.1, 0.04), (1.0, 1.0), (0.2, 0.07)):
        got = float(self_distill_loss(local, teacher, center, ts, tt))
        np.testing.assert_allclose(got, reference(local, teacher, center, ts, tt), rtol=2e-5)


def test_the_teacher_gets_no_gradient_and_a_matching_student_minimises_at_the_entropy():
    local, teacher, center = _inputs(1, b=2, m=1, k=5)
    g_teacher = jax.grad(lambda t: self_distill_loss(local, t, center))(teacher)
    assert np.all(np.asarray(g_teacher) == 0)
    # student logits equal to the teacher's centred ones at τs = τt: the cross-entropy is the teacher's entropy
    student = (teacher - center)[:, None, :]
    pt = _softmax64((teacher - center) / 0.5)
    entropy = -np.mean(np.sum(pt * np.log(pt), -1))
    np.testing.assert_allclose(float(self_distill_loss(student, teacher, center, 0.5, 0.5)), entropy, rtol=1e-5)


def test_center_update_is_the_ema_of_the_batch_mean():
    center = np.array([1.0, -2.0], np.float32)
    rows = np.array([[0.0, 4.0], [2.0, 0.0]], np.float32)  # mean (1, 2)
    np.testing.assert_allclose(np.asarray(update_center(center, rows, 0.9)), [1.0, -1.6], rtol=1e-6)


def test_self_distill_on_eight_devices_equals_one():
    local, teacher, center = _inputs(2, b=16)
    fn = jax.jit(jax.value_and_grad(lambda s, t, c: self_distill_loss(s, t, c)))
    value, grad = fn(local, teacher, center)
    mesh = make_mesh({"data": 8})
    rows = NamedSharding(mesh, P(("data", "fsdp")))
    args = [jax.device_put(local, rows), jax.device_put(teacher, rows), jax.device_put(center, NamedSharding(mesh, P()))]
    assert len(args[0].sharding.device_set) == 8
    value8, grad8 = fn(*args)
    np.testing.assert_allclose(float(value8), float(value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad8), np.asarray(grad), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(jax.jit(update_center)(center, args[1])),
                               np.asarray(update_center(center, jnp.asarray(teacher))), rtol=1e-6)
