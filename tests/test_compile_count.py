"""The train step compiles once per batch shape (bigvl/train/compile_count.py), as NaFlex buckets need:
9 steps cycling over 3 bucket shapes compile 3 times (counted by the wrapper and by jax's own cache), and
the sigmoid loss with gradient accumulation gives the same update as without at every bucket's batch."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.train_step import random_batch
from bigvl.config import base_config
from bigvl.parallel.mesh import DEFAULT_RULES, batch_sharding, host_local_to_global, make_mesh
from bigvl.train.compile_count import CountedTraces
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step
from tests.helpers.tiny import tiny_towers

BUCKET_BATCHES = (16, 8, 4)  # a bucket schedule's global batches (tokens_per_step // L)


def _config(accum: int):
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=8, depth=1, num_heads=2, vocab_size=64, context_length=8)
    c.model.embed_dim, c.loss.kind = 16, "sigmoid"
    c.batch_size, c.total_steps, c.optim.warmup_steps, c.optim.lr = 16, 10, 0, 1e-2
    c.optim.grad_accum_steps = accum
    return c


def _run(accum: int, steps: int):
    config = _config(accum)
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    setup = make_train_setup(config, mesh, DEFAULT_RULES)
    state = setup.compiled_init(jax.random.key(0))
    traces = CountedTraces(make_train_step(config, setup))
    losses = []
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        step = jax.jit(traces, in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                       out_shardings=(setup.state_shardings, None))
        for i in range(steps):
            config.batch_size = BUCKET_BATCHES[i % len(BUCKET_BATCHES)]
            state, metrics = step(state, host_local_to_global(random_batch(config, 1, seed=i), mesh))
            losses.append(float(metrics["loss"]))
    return traces, step, losses


def test_counts_one_trace_per_shape():
    traces = CountedTraces(lambda state, batch: (state + batch["x"].sum(), {}))
    step = jax.jit(traces)
    for i in range(9):
        step(jnp.float32(0), {"x": jnp.ones((BUCKET_BATCHES[i % 3], 2))})
    assert traces.count == 3 == step._cache_size()


@pytest.mark.slow  # three compiles of a real train step (~10 s idle, a minute on the shared box)
def test_three_shapes_compile_three_times():
    traces, step, losses = _run(accum=1, steps=9)
    assert traces.count == 3 and step._cache_size() == 3
    assert [s["image"][0] for s in traces.shapes] == list(BUCKET_BATCHES)
    assert np.all(np.isfinite(losses))


@pytest.mark.slow
def test_grad_accumulation_matches_at_every_bucket_batch():
    _, _, plain = _run(accum=1, steps=3)
    _, _, accumulated = _run(accum=2, steps=3)
    np.testing.assert_allclose(accumulated, plain, rtol=2e-5)
