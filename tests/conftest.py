"""Every test sees 8 simulated CPU devices, so sharded code runs against single-device results."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402

from tiny import TINY_WORLD  # noqa: E402


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small synthetic world (train, held-out splits, tokenizer) shared by the tests."""
    from bigvl.synthetic_world import build_world
    return build_world(tmp_path_factory.mktemp("world") / "world", **TINY_WORLD)
