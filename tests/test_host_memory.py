"""bigvl.parallel.host_memory: when glibc is told to keep freed memory, and that a compiled step then stops page-faulting."""
import json
import os
import subprocess
import sys

import pytest

from bigvl.parallel import host_memory

# A jitted gradient whose temporary buffer (~67 MB) is larger than glibc's largest dynamic
# mmap threshold (32 MiB): by default every call maps it afresh and faults its pages in.
PROBE = """
import json, resource
from bigvl.parallel.host_memory import reuse_freed_host_memory
applied = reuse_freed_host_memory()
import jax, jax.numpy as jnp
def loss(w, x):
    h = jax.nn.gelu(x @ w[0]); h = jax.nn.gelu(h @ w[1]); return jnp.mean((h @ w[2]) ** 2)
w = [jnp.full((1024, 1024), 1.0 / 1024)] * 3; x = jnp.ones((2048, 1024))
step = jax.jit(jax.grad(loss)).lower(w, x).compile()
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(step(w, x))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "temp_bytes": step.memory_analysis().temp_size_in_bytes, "faults": faults}))
"""


def run_probe(mode: str) -> dict:
    env = {**os.environ, host_memory.ENV: mode, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc settings")
def test_reused_memory_stops_the_page_faults_of_each_step():
    default, reuse = run_probe("default"), run_probe("reuse")
    assert not default["applied"] and reuse["applied"]
    pages = default["temp_bytes"] / 4096
    assert pages > 32 * 2 ** 20 / 4096  # the buffer is one glibc maps afresh
    # glibc's default: every call faults the whole temporary buffer in again
    assert min(default["faults"][2:]) > 0.5 * pages, default
    # kept: most calls fault nothing. The heap grows until it holds holes the buffers fit, and
    # now and then (the order of the threads' frees decides) one buffer lands past them and is
    # faulted in once more: seen 0-4 such calls of 20, under load too, never a quiet call by default.
    quiet = lambda faults: sum(f < 0.01 * pages for f in faults[-16:])
    assert quiet(reuse["faults"]) >= 10, reuse
    assert quiet(default["faults"]) == 0, default


def test_accelerator_present_follows_jax_platforms(monkeypatch):
    monkeypatch.setattr(host_memory.glob, "glob", lambda pattern: [])
    for platforms, expected in (("cpu", False), ("cuda", True), ("cpu,tpu", True), ("", False)):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        assert host_memory.accelerator_present() is expected, platforms
    monkeypatch.setattr(host_memory.glob, "glob", lambda pattern: ["/dev/nvidia0"] if "nvidia" in pattern else [])
    assert host_memory.accelerator_present()  # no JAX_PLATFORMS: a GPU's device node decides
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not host_memory.accelerator_present()  # JAX told to use the CPU: its setting wins


def test_off_with_an_accelerator_or_when_asked(monkeypatch):
    monkeypatch.setattr(host_memory, "accelerator_present", lambda: True)
    monkeypatch.delenv(host_memory.ENV, raising=False)
    assert host_memory.reuse_freed_host_memory() is False
    monkeypatch.setenv(host_memory.ENV, "default")
    assert host_memory.reuse_freed_host_memory() is False
    monkeypatch.setenv(host_memory.ENV, "always")
    with pytest.raises(ValueError, match="BIGVL_HOST_MALLOC='always'"):
        host_memory.reuse_freed_host_memory()
