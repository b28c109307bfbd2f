"""What every bigvl command does to its process before any work: pick JAX's platform, set up logging,
keep freed host memory.

JAX tries every platform plugin it finds when it starts. With libtpu installed (the `plan`
extra) and no TPU attached, that attempt prints libtpu's start-up errors ("could not determine
TPU accelerator type", "unexpected worker hostname") in every process. `choose_jax_platform`
decides before JAX starts: where libtpu is installed but no TPU device exists, JAX_PLATFORMS is
set to the platforms this machine has (the CPU, and CUDA where a GPU and JAX's CUDA plugin are
present). A JAX_PLATFORMS the user set is never changed. `bigvl.plan` compiles for TPU
topologies through libtpu's deviceless path, which needs no TPU start.
"""
from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import logging
import os
from typing import MutableMapping

from bigvl.parallel.host_memory import reuse_freed_host_memory

TPU_NODES = ("/dev/accel[0-9]*", "/dev/vfio/[0-9]*")
GPU_NODES = ("/dev/nvidia[0-9]*",)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("absl", "orbax", "jax._src")  # their INFO lines drown the run's own


def _present(patterns: tuple[str, ...]) -> bool:
    return any(glob.glob(pattern) for pattern in patterns)


def _cuda_plugin_installed() -> bool:
    return any((dist.metadata["Name"] or "").lower().startswith(("jax-cuda", "jax_cuda"))
               for dist in importlib.metadata.distributions())


def choose_jax_platform(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Sets JAX_PLATFORMS in `environ` where libtpu is installed but no TPU is attached; returns
    the value set, or None when nothing was changed (the user chose, no libtpu, or a TPU is here).

    Must run before JAX initialises its backends (bigvl/__init__.py calls it when bigvl is
    imported before jax)."""
    if environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None or _present(TPU_NODES):
        return None
    platforms = "cuda,cpu" if _present(GPU_NODES) and _cuda_plugin_installed() else "cpu"
    environ["JAX_PLATFORMS"] = platforms
    return platforms


def setup_process(log_format: str = LOG_FORMAT, level: int = logging.INFO) -> bool:
    """A command's process-wide set-up, before JAX's first operation: logging at `level` in
    `log_format` (other libraries' chatter at WARNING) and freed host memory kept for reuse on a
    CPU (bigvl/parallel/host_memory.py). Returns whether freed host memory is reused."""
    # force: an imported library (absl) may have installed a root handler already
    logging.basicConfig(level=level, format=log_format, force=True)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return reuse_freed_host_memory()
