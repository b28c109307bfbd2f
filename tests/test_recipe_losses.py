"""Long-CLIP and ALIP objectives against float64 NumPy references; sharded == single device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.losses import recipe_terms as recipe_losses
from bigvl.losses.multi_text import multi_positive_softmax_loss, per_text_softmax_loss
from bigvl.losses.objective import Objective
from bigvl.parallel.mesh import make_mesh


def _embeddings(b, t, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d))
    y = rng.normal(size=(b, t, d)) + 0.7 * x[:, None, :]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    return x, y


def _clip_loss(x, y, scale):
    """float64 CLIP InfoNCE, rows and columns."""
    logits = scale * x @ y.T
    log_rows = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    log_cols = logits - np.log(np.exp(logits).sum(0, keepdims=True))
    return -0.5 * (np.mean(np.diag(log_rows)) + np.mean(np.diag(log_cols)))


def _per_pair(x, y, scale):
    logits = scale * x @ y.T
    rows = np.log(np.exp(logits).sum(1)) - np.diag(logits)
    cols = np.log(np.exp(logits).sum(0)) - np.diag(logits)
    return 0.5 * (rows + cols)


def test_pca_projection_matches_svd_reconstruction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)) * np.linspace(3, 0.1, 12)  # distinct variances
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    want = mean + (x - mean) @ vt[:4].T @ vt[:4]
    np.testing.assert_allclose(recipe_losses.principal_component_projection(jnp.float32(x), 4), want,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(recipe_losses.principal_component_projection(jnp.float32(x), 12),
                                  np.float32(x))


def test_long_clip_loss_is_long_term_plus_pca_short_term():
    x, y = _embeddings(16, 2, 8, seed=1)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    coarse = mean + (x - mean) @ vt[:3].T @ vt[:3]
    coarse /= np.linalg.norm(coarse, axis=-1, keepdims=True)
    want = _clip_loss(x, y[:, 0], 6.0) + _clip_loss(coarse, y[:, 1], 6.0)
    got = recipe_losses.long_clip_loss(jnp.float32(x), jnp.float32(y), 6.0, pca_dim=3)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_alip_loss_on_a_hand_computed_two_example_case():
    """ALIP's released training step (deepglint/ALIP train.py + Adaptive_loss), by hand.

    Its formulas: per similarity kind, the EMA first takes the batch mean, m ← 0.99 m + 0.01 mean(s),
    starting from m = 1; then gate = exp(s − m)²; the sample weight is min(gate_alt,caption, 1);
    where that gate is < 1 the pair weights are the image-alt / image-caption gates, else 1;
    loss = mean_i w_s w_alt ℓ_alt,i + mean_i w_s w_cap ℓ_cap,i with ℓ_i = (row CE + column CE) / 2.

    Two examples in 2-D, logit scale t = ln 3 (so e^-t = 1/3):
      image  x0 = (1, 0)  x1 = (0, 1)
      alt    a0 = (1, 0)  a1 = (0, 1)      s_ia  = (1, 1)  mean 1    → m_ia = 1
      caption c0 = (1, 0) c1 = (1, 0)      s_ic  = (1, 0)  mean 1/2  → m_ic = 0.995
                                           s_ac  = (1, 0)  mean 1/2  → m_ac = 0.995
      example 0: gate_ac = e^{2·0.005} ≥ 1 → w_s = 1, pair weights 1
      example 1: gate_ac = e^{-1.99} < 1 → w_s = e^{-1.99}, w_alt = e^{2(1−1)} = 1, w_cap = e^{-1.99}
    InfoNCE terms: image·alt logits t·I: ℓ_alt,0 = ℓ_alt,1 = ln(1 + e^-t) = ln(4/3).
      image·caption logits t·[[1, 1], [0, 0]]: rows ln 2, ln 2; columns ln(1 + e^-t) = ln(4/3),
      ln(e^t + 1) = ln 4 → ℓ_cap,0 = ½ ln(8/3), ℓ_cap,1 = ½ ln 8.
    Step 2 on the same batch: m_ac = m_ic = 0.99 · 0.995 + 0.005 = 0.99005, m_ia = 1.
    """
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[[1.0, 0.0], [1.0, 0.0]],    # example 0: (alt, caption)
                  [[0.0, 1.0], [1.0, 0.0]]])   # example 1
    scale = np.log(3.0)
    ema = recipe_losses.alip_initial_state()
    for m in (0.995, 0.99005):  # the alt-caption (= image-caption) EMA after steps 1 and 2
        w1 = np.exp(-2 * m)  # example 1's sample gate (and its caption pair gate)
        want = 0.5 * (np.log(4 / 3) + w1 * np.log(4 / 3)) + 0.5 * (0.5 * np.log(8 / 3) + w1 * w1 * 0.5 * np.log(8))
        loss, ema, metrics = recipe_losses.alip_loss(jnp.float32(x), jnp.float32(y), jnp.float32(scale), ema)
        np.testing.assert_allclose(loss, want, rtol=2e-6)
        np.testing.assert_allclose([ema["alt_caption"], ema["image_alt"], ema["image_caption"]], [m, 1.0, m],
                                   rtol=1e-6)
        np.testing.assert_allclose(metrics["alip_sample_gate"], (1 + w1) / 2, rtol=1e-6)
        np.testing.assert_allclose(metrics["alip_alt_gate"], 1.0, rtol=1e-6)
        np.testing.assert_allclose(metrics["alip_caption_gate"], (1 + w1) / 2, rtol=1e-6)


def test_alip_gates_carry_no_gradient():
    """d loss / d embeddings equals that of the same weighted loss with the gates as constants."""
    x, y = (jnp.float32(a) for a in _embeddings(8, 2, 4, seed=5))
    ema = recipe_losses.alip_initial_state()
    grads = jax.grad(lambda a, b: recipe_losses.alip_loss(a, b, 5.0, ema)[0], argnums=(0, 1))(x, y)
    # Reference: recompute the gates in NumPy, then differentiate the weighted InfoNCE only.
    xs, ys = np.float64(x), np.float64(y)
    sims = {"alt_caption": (ys[:, 0] * ys[:, 1]).sum(1), "image_alt": (xs * ys[:, 0]).sum(1),
            "image_caption": (xs * ys[:, 1]).sum(1)}
    m = {k: 0.99 + 0.01 * v.mean() for k, v in sims.items()}
    g = {k: np.exp(sims[k] - m[k]) ** 2 for k in sims}
    unsure = g["alt_caption"] < 1
    w_alt = np.minimum(g["alt_caption"], 1) * np.where(unsure, g["image_alt"], 1)
    w_cap = np.minimum(g["alt_caption"], 1) * np.where(unsure, g["image_caption"], 1)

    def weighted(a, b):
        def pair(u, v):
            logits = 5.0 * u @ v.T
            labels = jnp.arange(len(u))
            rows = jax.nn.logsumexp(logits, 1) - logits[labels, labels]
            cols = jax.nn.logsumexp(logits, 0) - logits[labels, labels]
            return 0.5 * (rows + cols)
        return jnp.mean(jnp.float32(w_alt) * pair(a, b[:, 0])) + jnp.mean(jnp.float32(w_cap) * pair(a, b[:, 1]))

    want = jax.grad(weighted, argnums=(0, 1))(x, y)
    for got, ref in zip(grads, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def _objective(num_texts=3, **kw):
    """An Objective over config.loss defaults changed by `kw` (config checks are tested in test_config_checks)."""
    from bigvl.losses.config_defaults import loss_config_defaults
    cfg = loss_config_defaults()
    cfg.update({**dict(name="softmax", multi_text="per_text", text_weights=[], pca_dim=3, alip_momentum=0.99,
                       tile_size=8), **kw})
    return Objective(cfg=cfg, num_texts=num_texts, captioner=False)


def test_dreamlip_objective_is_per_text_plus_multi_positive():
    x, y = _embeddings(8, 3, 6, seed=2)
    outputs = {"image_embeds": jnp.float32(x), "text_embeds": jnp.float32(y), "logit_scale": jnp.float32(7.0)}
    loss, _, state = _objective(multi_text="per_text+multi_positive")(outputs, {}, {})
    want = per_text_softmax_loss(x, y, 7.0) + multi_positive_softmax_loss(x, y, 7.0)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert state == {}


@pytest.mark.parametrize("mode", ["long_clip", "alip"])
def test_sharded_recipe_objectives_equal_single_device(mode):
    objective = _objective(num_texts=2, multi_text=mode)
    x, y = (np.float32(a) for a in _embeddings(32, 2, 16, seed=4))

    def step(x, y, scale, loss_state):
        def loss_fn(x, y, scale):
            out = {"image_embeds": x, "text_embeds": y, "logit_scale": scale}
            loss, _, new_state = objective(out, {}, loss_state)
            return loss, new_state
        return jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(x, y, scale)

    state = objective.initial_state()
    args = (x, y, np.float32(8.0))
    (single_value, single_state), single_grads = jax.jit(step)(*jax.device_put(args, jax.devices()[0]), state)
    mesh = make_mesh({"data": 8})
    batch = NamedSharding(mesh, P(("data", "fsdp")))
    shardings = (batch, batch, NamedSharding(mesh, P()))
    sharded = [jax.device_put(a, s) for a, s in zip(args, shardings)]
    (value, new_state), grads = jax.jit(step)(*sharded, state)
    assert len(sharded[1].sharding.device_set) == 8
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for key in new_state:
        np.testing.assert_allclose(new_state[key], single_state[key], rtol=1e-6)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_two_text_objectives_reject_other_shapes():
    x, y = _embeddings(4, 3, 3)
    with pytest.raises(ValueError, match="long, short"):
        recipe_losses.long_clip_loss(x, y, 1.0)
    with pytest.raises(ValueError, match="alt, caption"):
        recipe_losses.alip_loss(x, y, 1.0, recipe_losses.alip_initial_state())


def _grouping_reference(patches, texts, scale, threshold):
    """float64 loops: DreamLIP's grouping loss written out one (image, text) at a time."""
    b, t, _ = texts.shape
    grouped = np.zeros_like(texts)
    for i in range(b):
        for j in range(t):
            s = np.array([texts[i, j] @ patches[i, p] for p in range(patches.shape[1])])
            a = (s - s.min()) / (s.max() - s.min() + 1e-10)
            a[a < threshold] = 0.0
            g = (a / a.sum()) @ patches[i]
            grouped[i, j] = g / np.linalg.norm(g)
    return _clip_loss(grouped.reshape(b * t, -1), texts.reshape(b * t, -1), scale)


def _patches(b, n, d, seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(b, n, d))
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.6])
def test_grouping_loss_matches_loop_reference(threshold):
    _, texts = _embeddings(6, 3, 8, seed=5)
    patches = _patches(6, 10, 8, seed=6)
    got = recipe_losses.grouping_loss(jnp.float32(patches), jnp.float32(texts), 9.0, threshold)
    np.testing.assert_allclose(got, _grouping_reference(patches, texts, 9.0, threshold), rtol=1e-5)


def test_grouping_pools_only_the_matching_patch_when_it_alone_passes():
    # Each text equals one patch of its image; the other patches are far less similar,
    # so with a high threshold the grouped embedding is exactly that patch: perfect pairs.
    patches = _patches(4, 5, 16, seed=7)
    texts = patches[:, [2, 4]]  # [B, 2, D]
    got = recipe_losses.grouping_loss(jnp.float32(patches), jnp.float32(texts), 10.0, 0.999)
    np.testing.assert_allclose(got, _clip_loss(texts.reshape(8, -1), texts.reshape(8, -1), 10.0), rtol=1e-4, atol=1e-6)


def test_objective_adds_weighted_grouping_term():
    x, y = _embeddings(8, 3, 6, seed=8)
    patches = _patches(8, 4, 6, seed=9)
    outputs = {"image_embeds": jnp.float32(x), "text_embeds": jnp.float32(y), "logit_scale": jnp.float32(7.0),
               "patch_embeds": jnp.float32(patches)}
    objective = _objective(multi_text="per_text+multi_positive", grouping_weight=0.5, grouping_threshold=0.1)
    loss, metrics, _ = objective(outputs, {}, {})
    want_group = _grouping_reference(patches, y, 7.0, 0.1)
    np.testing.assert_allclose(metrics["grouping_loss"], want_group, rtol=1e-5)
    want = per_text_softmax_loss(x, y, 7.0) + multi_positive_softmax_loss(x, y, 7.0) + 0.5 * want_group
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_sharded_grouping_loss_equals_single_device():
    _, texts = _embeddings(16, 3, 8, seed=10)
    args = (np.float32(_patches(16, 6, 8, seed=11)), np.float32(texts), np.float32(6.0))
    step = jax.jit(jax.value_and_grad(lambda p, t, s: recipe_losses.grouping_loss(p, t, s, 0.1), argnums=(0, 1, 2)))
    single_value, single_grads = step(*jax.device_put(args, jax.devices()[0]))
    mesh = make_mesh({"data": 8})
    batch = NamedSharding(mesh, P(("data", "fsdp")))
    sharded = [jax.device_put(a, s) for a, s in zip(args, (batch, batch, NamedSharding(mesh, P())))]
    value, grads = step(*sharded)
    assert len(sharded[0].sharding.device_set) == 8
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
