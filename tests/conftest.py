"""Every test sees 8 simulated CPU devices (and only the CPU platform), so sharded code runs against single-device results."""
import os

from tests.helpers.xla_env import xla_flags  # the tests' compile flags: see tests/helpers/xla_env.py

os.environ.setdefault("XLA_FLAGS", xla_flags(8))
# CPU only, also for subprocesses: with libtpu installed (the `plan` extra) JAX would otherwise try a TPU
# backend at start-up and log libtpu's "could not determine TPU accelerator type" noise in every process.
# bigvl.plan compiles for TPU topologies under JAX_PLATFORMS=cpu too.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from bigvl.parallel.host_memory import reuse_freed_host_memory  # noqa: E402

reuse_freed_host_memory()  # before JAX starts: each test's compiled steps reuse freed memory

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402

from tests.helpers.tiny import TINY_WORLD  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One persistent XLA cache for the session, also for subprocesses (via the environment):
    the many tiny train runs compile the same programs, and compiling dominates their time."""
    path = str(tmp_path_factory.mktemp("jax_compilation_cache"))
    settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small synthetic world (train, held-out splits, tokenizer) shared by the tests."""
    from bigvl.data.world import build_world
    return build_world(tmp_path_factory.mktemp("world") / "world", **TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory):
    """6 uninterrupted steps of the tiny config on data=8: the reference run of the train tests."""
    from bigvl.train.loop import train_and_evaluate
    from tests.helpers.tiny import tiny_config
    workdir = tmp_path_factory.mktemp("tiny_run")
    train_and_evaluate(tiny_config(tiny_world), str(workdir))
    return workdir
