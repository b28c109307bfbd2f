"""GradCache accumulation against the one-pass full-batch gradient, on the 8-device mesh."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from bigvl.config import ConfigError, base_config, validate
from bigvl.losses.objective import Objective
from bigvl.models import build_model
from bigvl.parallel.mesh import batch_sharding, make_mesh, replicated, rules_from_config
from bigvl.train.grad_accumulation import accumulated_value_and_grad, merge_micro_batches, split_micro_batches
from bigvl.train.loop import train_and_evaluate
from bigvl.train.metrics_log import read_metrics
from tests.helpers.tiny import tiny_config, tiny_towers


def test_split_and_merge_are_inverse_and_interleave():
    x = np.arange(12).reshape(6, 2)
    micro = split_micro_batches({"x": x}, 3)["x"]
    np.testing.assert_array_equal(micro[1], x[[1, 4]])  # micro-batch k holds rows k, k + K, ...
    np.testing.assert_array_equal(merge_micro_batches(micro), x)


@pytest.mark.parametrize("loss_name,multi_text,texts,k", [
    ("softmax", "per_text+multi_positive", 3, 4), ("sigmoid_ring", "per_text", 1, 2)])
def test_accumulated_gradient_equals_full_batch_gradient(loss_name, multi_text, texts, k):
    config = base_config()
    tiny_towers(config.model)
    config.model.embed_dim = 16
    config.loss.update(name=loss_name, multi_text=multi_text, tile_size=2)
    if loss_name.startswith("sigmoid"):
        config.model.temperature_init, config.model.bias_init = 10.0, -10.0
    model = build_model(config.model)
    mesh = make_mesh({"data": -1})
    rules = rules_from_config(config.sharding_rules)
    batch_size = 32  # K = 4: micro-batches of 8 = 1 row per device
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (batch_size, 16, 16, 3), dtype=np.uint8),
             "tokens": rng.integers(4, 64, (batch_size, texts, 8), dtype=np.int32)}
    params = nn.unbox(model.init(jax.random.key(0), batch["image"][:1], batch["tokens"][:1, 0])["params"])

    def apply_fn(p, b):
        n, t, length = b["tokens"].shape
        out = model.apply({"params": p}, b["image"], b["tokens"].reshape(n * t, length))
        if t > 1:
            out["text_embeds"] = out["text_embeds"].reshape(n, t, -1)
        return out

    objective = Objective(cfg=config.loss, num_texts=texts, captioner=False, mesh=mesh)

    def loss_fn(outputs, full_batch):
        return objective(outputs, full_batch, {})[0], outputs["logit_scale"]

    fn = jax.jit(accumulated_value_and_grad(apply_fn, loss_fn, k), in_shardings=(replicated(mesh), batch_sharding(mesh)))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        (loss, _), grads = jax.device_get(fn(params, batch))
    # the independent reference: plain value_and_grad of the full-batch loss, no accumulation code
    reference = jax.device_get(jax.jit(jax.value_and_grad(lambda p: loss_fn(apply_fn(p, batch), batch)[0]))(params))
    np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
    for (path, g), ref in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(reference[1])):
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max() + 1e-9,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_training_with_two_micro_batches_matches_one(tiny_world, tiny_run, tmp_path):
    config = tiny_config(tiny_world)
    config.optim.grad_accum_steps = 2  # micro-batch 8 = 1 row per device
    train_and_evaluate(config, str(tmp_path))
    from bigvl.inference.run import load_run
    for a, b in zip(jax.tree.leaves(load_run(str(tiny_run)).params), jax.tree.leaves(load_run(str(tmp_path)).params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
    straight = [r["loss"] for r in read_metrics(str(tiny_run)) if "loss" in r]
    accumulated = [r["loss"] for r in read_metrics(str(tmp_path)) if "loss" in r]
    np.testing.assert_allclose(accumulated, straight, rtol=1e-5)


def test_validate_rejects_batches_that_do_not_split():
    config = base_config()
    config.world.build = True
    config.batch_size, config.optim.grad_accum_steps = 24, 5
    with pytest.raises(ConfigError, match="optim.grad_accum_steps"):
        validate(config)
    config.optim.grad_accum_steps = 4  # micro-batch 6 over data = 8 devices
    with pytest.raises(ConfigError, match="micro-batch 24 / 4 = 6"):
        validate(config)
    config.optim.grad_accum_steps = 3
    validate(config)
