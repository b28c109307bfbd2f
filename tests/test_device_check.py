"""The GPU path on a CPU: attention picks its kernel by backend, and the device check's reduced
mode (what a GPU machine runs at full size) prints its one JSON line with every measurement."""
import json
import os
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.models.transformer import attention, attention_implementation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("dtype,head_dim,backend,want", [
    (jnp.bfloat16, 64, "gpu", "cudnn"), (jnp.float16, 128, "cuda", "cudnn"),
    (jnp.float32, 64, "gpu", "xla"),  # cuDNN flash attention needs 16-bit inputs
    (jnp.bfloat16, 72 + 1, "gpu", "xla"), (jnp.bfloat16, 256, "gpu", "xla"),  # head widths it does not take
    (jnp.bfloat16, 64, "tpu", "xla"), (jnp.bfloat16, 64, "cpu", "xla")])
def test_attention_kernel_is_chosen_by_backend(dtype, head_dim, backend, want):
    assert attention_implementation(dtype, head_dim, backend) == want


def test_default_attention_on_cpu_is_xlas():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 5, 2, 8)), jnp.float32) for _ in range(3))
    np.testing.assert_array_equal(np.asarray(attention(q, k, v, is_causal=True)),
                                  np.asarray(attention(q, k, v, is_causal=True, implementation="xla")))


@pytest.mark.slow
def test_device_check_cpu_mode_prints_every_measurement():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([os.path.join(ROOT, "benchmarks", "device_check.sh"), "--cpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads([s for s in done.stdout.splitlines() if s.startswith("{")][-1])
    assert line["mode"] == "cpu" and line["platform"] == "cpu"
    for name in ("train", "loss", "decoding"):
        assert "error" not in line[name] and "skipped" not in line[name], (name, line[name])
    train = line["train"]
    assert train["pairs_per_s"] == pytest.approx(train["batch_size"] / train["step_time_s"])
    assert np.isfinite(train["loss_last"]) and 0 < train["mfu"]
    loss = line["loss"]
    assert loss["softmax_plain"]["largest_batch"] == loss["softmax_tiled"]["largest_batch"] == 128  # no limit on CPU
    assert loss["softmax_plain"]["loss_value"] == pytest.approx(loss["softmax_tiled"]["loss_value"], rel=1e-5)
    assert line["decoding"]["captions_per_s"] > 0 and line["decoding"]["same_tokens"]
