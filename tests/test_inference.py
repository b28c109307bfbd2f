"""The inference plumbing: the chunk runner against calling the function on the whole input, image
preparation against a hand crop, a run's config read without the full schema, params restored from a
checkpoint written here; two processes each getting the whole output."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import portpicker
import pytest

from bigvl.config import base_config
from bigvl.inference.batched import run_in_chunks
from bigvl.inference.images import prepare_images
from bigvl.inference.run import INFERENCE_DEFAULTS, read_run_config, restore_params
from bigvl.models import model_config_defaults
from bigvl.parallel.mesh import batch_sharding, make_mesh, replicated
from tests.helpers.xla_env import subprocess_env

CHUNK = 16  # two rows per device of the 8 simulated ones


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 4, "fsdp": 2, "tensor": 1})


def _row_fn(mesh):
    """A jitted row-wise function sharded over the batch axes, with its numpy reference."""
    w = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    jitted = jax.jit(lambda x: (jnp.tanh(x @ w), x.sum(axis=1)), in_shardings=batch_sharding(mesh))
    return jitted, lambda x: (np.tanh(x @ w), x.sum(axis=1))


@pytest.mark.parametrize("n", [1, CHUNK, 3 * CHUNK, 2 * CHUNK + 5])  # one row, one chunk, divisible, not
def test_run_in_chunks_equals_the_function_on_the_whole_input(mesh, n):
    jitted, reference = _row_fn(mesh)
    x = np.random.default_rng(n).normal(size=(n, 5)).astype(np.float32)
    seen = []

    def fn(batch, start):
        seen.append((start, np.asarray(batch)))
        return jitted(batch)

    out = run_in_chunks(fn, x, CHUNK, mesh)
    want = reference(x)
    assert [o.shape for o in out] == [(n, 3), (n,)]
    np.testing.assert_allclose(out[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], want[1], rtol=1e-5, atol=1e-6)
    assert [start for start, _ in seen] == list(range(0, n, CHUNK))
    assert all(batch.shape == (CHUNK, 5) for _, batch in seen)  # one compiled shape
    last_start, last = seen[-1]
    real = n - last_start  # the last chunk: its real rows, then the last row repeated
    np.testing.assert_array_equal(last[:real], x[last_start:])
    np.testing.assert_array_equal(last[real:], np.repeat(x[-1:], CHUNK - real, axis=0))


def test_run_in_chunks_passes_named_inputs_sharded_over_the_batch_axes(mesh):
    rng = np.random.default_rng(1)
    inputs = {"a": rng.normal(size=(21, 4)).astype(np.float32), "b": rng.integers(0, 9, (21, 2)).astype(np.int32)}
    shardings = []

    def fn(batch, start):
        shardings.append(batch["a"].sharding)
        return batch["a"] * 2 + batch["b"].sum(axis=1, keepdims=True)

    out = run_in_chunks(fn, inputs, CHUNK, mesh)
    np.testing.assert_allclose(out, inputs["a"] * 2 + inputs["b"].sum(axis=1, keepdims=True))
    assert all(s.is_equivalent_to(batch_sharding(mesh), 2) for s in shardings)


def test_run_in_chunks_rejects_empty_and_ragged_inputs(mesh):
    with pytest.raises(ValueError, match="empty"):
        run_in_chunks(lambda b, s: b, np.zeros((0, 3)), CHUNK, mesh)
    with pytest.raises(ValueError, match="different lengths"):
        run_in_chunks(lambda b, s: b["a"], {"a": np.zeros((3, 1)), "b": np.zeros((4, 1))}, CHUNK, mesh)


def test_prepare_images_centre_crops_any_size():
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    out = prepare_images([wide, tall, np.full((64, 48, 3), 77, np.uint8)], 20)
    assert out.shape == (3, 20, 20, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], wide[:, 10:30])  # the central square, already the model's size
    np.testing.assert_array_equal(out[1], tall[5:25])
    assert (out[2] == 77).all()  # resizing a flat image keeps its colour
    assert prepare_images([], 8).shape == (0, 8, 8, 3)


def test_read_run_config_fills_the_model_and_inference_keys_of_an_old_config(tmp_path):
    saved = {"model": {"embed_dim": 16, "image": {"image_size": 32}}, "data": {"tokenizer": "tok.model"},
             "evals": {"retrieval": "r.array_record"}, "seed": 3}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = read_run_config(str(tmp_path))
    want_model = model_config_defaults()
    want_model.embed_dim, want_model.image.image_size = 16, 32
    assert config.model.to_dict() == want_model.to_dict()
    assert config.data.tokenizer == "tok.model" and config.seed == 3
    assert config.evals.retrieval.to_dict() == {"type": "retrieval", "split": "r.array_record"}  # flat keys → entries
    assert config.evals.batch_size == INFERENCE_DEFAULTS["evals"]["batch_size"]
    assert config.sharding_rules == INFERENCE_DEFAULTS["sharding_rules"]
    saved["model"]["image"]["no_such_key"] = 1
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(KeyError, match="no_such_key"):
        read_run_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_run_config(str(tmp_path / "missing"))


def test_restore_params_reads_the_params_alone_onto_the_given_shardings(tmp_path, mesh):
    rng = np.random.default_rng(3)
    steps = {s: {"dense": {"kernel": rng.normal(size=(8, 4)).astype(np.float32)},
                 "scale": rng.normal(size=(3,)).astype(np.float32)} for s in (1, 2)}
    with ocp.CheckpointManager(str(tmp_path / "checkpoints")) as manager:
        for step, params in steps.items():  # laid out like the trainer's: state = {params, opt_state}
            state = {"params": params, "opt_state": {"mu": np.zeros((5,), np.float32)}}
            manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
        manager.wait_until_finished()
    kernel_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", None))
    abstract = {"dense": {"kernel": jax.ShapeDtypeStruct((8, 4), np.float32, sharding=kernel_sharding)},
                "scale": jax.ShapeDtypeStruct((3,), np.float32, sharding=replicated(mesh))}
    params, step = restore_params(str(tmp_path), abstract)
    assert step == 2
    np.testing.assert_array_equal(params["dense"]["kernel"], steps[2]["dense"]["kernel"])
    np.testing.assert_array_equal(params["scale"], steps[2]["scale"])
    assert params["dense"]["kernel"].sharding.is_equivalent_to(kernel_sharding, 2)
    params, step = restore_params(str(tmp_path), abstract, step=1)
    assert step == 1
    np.testing.assert_array_equal(params["scale"], steps[1]["scale"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_params(str(tmp_path / "empty"), abstract)


_TWO_HOST_SCRIPT = """
import sys
import numpy as np
from bigvl.parallel.distributed import initialize_local
coordinator, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
initialize_local(coordinator, 2, process_id, 2)
import jax, jax.numpy as jnp
from bigvl.inference.batched import run_in_chunks
from bigvl.parallel.mesh import batch_sharding, make_mesh
mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
x = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)  # every host passes the same full input
fn = jax.jit(lambda b: {"sq": b * b, "sum": b.sum(axis=1)}, in_shardings=batch_sharding(mesh))
got = run_in_chunks(lambda b, start: fn(b), x, 4, mesh)
np.savez(out, hosts=jax.process_count(), **got)
"""


def test_run_in_chunks_gives_every_host_the_full_output(tmp_path):
    """Two processes (2 CPU devices each, gloo): each passes the whole input, each gets the whole output."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "two_hosts.py"
    script.write_text(_TWO_HOST_SCRIPT)
    port = portpicker.pick_unused_port()
    env = subprocess_env(None)
    procs = [subprocess.Popen([sys.executable, str(script), f"127.0.0.1:{port}", str(i), str(tmp_path / f"out{i}.npz")],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    x = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    for i, (p, text) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, text[-3000:]
        got = np.load(tmp_path / f"out{i}.npz")
        assert int(got["hosts"]) == 2
        np.testing.assert_array_equal(got["sq"], x * x)
        np.testing.assert_array_equal(got["sum"], x.sum(axis=1))


def test_inference_defaults_are_the_schema_defaults():
    """read_run_config's fallbacks for an older config.json are what bigvl.config.base_config says."""
    schema = base_config()
    for key, default in INFERENCE_DEFAULTS.items():
        if isinstance(default, dict):
            assert {name: schema[key][name] for name in default} == default
        else:
            assert schema[key] == default
