"""FLAIR: text-conditioned pooling chunked == unchunked == a float64 reference; the multi-positive
sigmoid objective against a float64 reference; 8 devices == 1; the model and objective wired."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.config import base_config
from bigvl.losses.flair import flair_loss
from bigvl.losses.objective import Objective
from bigvl.models.build import build_model, dummy_inputs
from bigvl.models.flair_pooling import text_conditioned_logits, text_conditioned_pool
from bigvl.parallel.mesh import make_mesh
from tests.helpers.tiny import tiny_towers


def _pool_inputs(b=3, t=6, n=5, heads=2, head_dim=4, e=8, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=s) for s in ((t, heads, head_dim), (b, n, heads, head_dim), (b, n, heads, head_dim)))
    out = rng.normal(size=(heads, head_dim, e)) / 3
    text = rng.normal(size=(t, e))
    return q, k, v, out, text / np.linalg.norm(text, axis=1, keepdims=True)


def _reference_logits(q, k, v, out, text, scale, bias):
    """float64, one (image, text) pair at a time: softmax(q·k/√h) v per head, W_o, normalise, score."""
    b, t = k.shape[0], q.shape[0]
    logits = np.zeros((b, t))
    for i in range(b):
        for j in range(t):
            heads = []
            for h in range(q.shape[1]):
                s = k[i, :, h] @ q[j, h] / np.sqrt(q.shape[2])
                w = np.exp(s - s.max())
                heads.append((w / w.sum()) @ v[i, :, h])
            pooled = np.einsum("hd,hde->e", np.array(heads), out)
            logits[i, j] = scale * pooled @ text[j] / np.linalg.norm(pooled) + bias
    return logits


@pytest.mark.parametrize("chunk", [1, 4, 6, 100])
def test_chunked_pooling_equals_unchunked_and_float64(chunk):
    args = _pool_inputs()
    want = _reference_logits(*args, 5.0, -2.0)
    f32 = [jnp.float32(a) for a in args]
    got = text_conditioned_logits(*f32, 5.0, -2.0, chunk)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    pooled = text_conditioned_pool(*f32[:4])
    np.testing.assert_allclose(5.0 * jnp.einsum("bte,te->bt", pooled, f32[4]) - 2.0, got, rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda *a, c=c: jnp.sum(jnp.sin(text_conditioned_logits(*a, 5.0, -2.0, c))),
                      argnums=(0, 1, 2, 3, 4))(*f32) for c in (chunk, 6)]
    for got_grad, want_grad in zip(*grads):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def _reference_flair(image, text, flair_logits, scale, bias):
    """float64 FLAIR objective, pair by pair: −(1/B) Σ log σ(±logit) for both logit sets."""
    b, t, _ = text.shape
    total = 0.0
    for i in range(b):
        for j in range(b):
            for s in range(t):
                z = 1.0 if i == j else -1.0
                for logit in (flair_logits[i, j * t + s], scale * image[i] @ text[j, s] + bias):
                    total += np.log1p(np.exp(-z * logit))
    return total / b


def _flair_inputs(b=8, t=3, e=6, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(b, e))
    text = rng.normal(size=(b, t, e)) + 0.5 * image[:, None]
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    return image, text, rng.normal(size=(b, b * t)) * 3 - 2


def test_flair_loss_matches_float64_reference():
    image, text, logits = _flair_inputs()
    want = _reference_flair(image, text, logits, 7.0, -3.0)
    got = flair_loss(jnp.float32(image), jnp.float32(text), jnp.float32(logits), 7.0, -3.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_flair_on_eight_devices_equals_one():
    image, text, logits = (np.float32(a) for a in _flair_inputs(b=16, t=2, e=8, seed=1))
    q, k, v, out, _ = (np.float32(a) for a in _pool_inputs(b=16, t=32, n=4, e=8, seed=2))

    def loss(image, text, q, k, v, scale):
        pooled = text_conditioned_logits(q, k, v, out, text.reshape(32, 8), scale, -1.0, 8)
        return flair_loss(image, text, pooled, scale, -1.0)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4, 5)))
    args = (image, text, q, k, v, np.float32(5.0))
    single_value, single_grads = step(*jax.device_put(args, jax.devices()[0]))
    mesh = make_mesh({"data": 8})
    rows, whole = NamedSharding(mesh, P(("data", "fsdp"))), NamedSharding(mesh, P())
    sharded = [jax.device_put(a, s) for a, s in zip(args, (rows, rows, rows, rows, rows, whole))]
    assert len(sharded[0].sharding.device_set) == 8
    value, grads = step(*sharded)
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _flair_config():
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=8, vocab_size=64, context_length=8)
    c.model.update(embed_dim=16, flair_pool_heads=2, flair_pool_chunk=3, temperature_init=10.0, bias_init=-10.0)
    c.data.update(caption_strategy="multi", multi_k=2, multi_with_raw=True)
    c.loss.update(name="sigmoid", multi_text="flair")
    return c


def test_flair_model_gives_pair_logits_the_objective_reads():
    c = _flair_config()
    model, objective = build_model(c.model), Objective.from_config(c)
    images, _ = dummy_inputs(c.model, 2)
    tokens = jax.random.randint(jax.random.key(0), (2, 3, 8), 4, 64)
    params = model.init(jax.random.key(1), images, tokens.reshape(6, 8))["params"]
    assert set(params["flair_pool"]) == {"ln", "q", "kv", "out"}
    outputs = objective.model_outputs(model, params, {"image": images, "tokens": tokens})
    assert outputs["flair_logits"].shape == (2, 6) and outputs["text_embeds"].shape == (2, 3, 16)
    total, terms, _ = objective(outputs, {}, {})
    assert np.isfinite(total) and set(terms) == {"contrastive_loss"}


def test_flair_config_contradictions_are_named():
    c = _flair_config()
    c.model.flair_pool_heads = 0
    with pytest.raises(ValueError, match="flair_pool_heads"):
        Objective.from_config(c)
    c = _flair_config()
    c.loss.name = "softmax"
    with pytest.raises(ValueError, match="loss.name"):
        Objective.from_config(c)
    c = _flair_config()
    c.model.bias_init = None
    with pytest.raises(ValueError, match="model.flair_pool_heads"):
        build_model(c.model)
