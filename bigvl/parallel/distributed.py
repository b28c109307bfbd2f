"""Joining a multi-process JAX run (TPU pod workers, SLURM, Open MPI, explicit env vars).

`maybe_initialize()` must run before any other JAX operation (before `jax.devices()`,
`jax.numpy`, ...). On a single CPU/GPU host it does nothing. What counts as "several
processes" mirrors the environments JAX itself can auto-detect (`jax._src.clusters` in
jax 0.10.2), so that `jax.distributed.initialize()` never runs where it could not finish:

- explicit: `JAX_COORDINATOR_ADDRESS` (host:port) + `JAX_NUM_PROCESSES` + `JAX_PROCESS_ID`
  (JAX reads only the first; we pass the other two), with more than one process;
- SLURM: `SLURM_JOB_ID`, `SLURM_STEP_NODELIST`, `SLURM_NTASKS` > 1, `SLURM_PROCID`,
  `SLURM_LOCALID` (as set inside `srun`);
- Open MPI: `OMPI_MCA_orte_hnp_uri` and `OMPI_COMM_WORLD_SIZE` > 1 (inside `mpirun`);
- Cloud TPU VM: on GKE when `TPU_WORKER_HOSTNAMES` / `TPU_PROCESS_ADDRESSES` lists more
  than one host or `MEGASCALE_NUM_SLICES` > 1; on a GCE TPU VM always (the worker list
  lives in the VM metadata, and JAX reads it; a single-host slice joins as 1 process).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import jax

_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
               "SLURM_LOCALID")
_EXPLICIT_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _int_var(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def _running_in_cloud_tpu_vm() -> bool:
    """True on a Cloud TPU VM with libtpu (JAX decides this at import time, no backend needed)."""
    try:
        from jax._src import cloud_tpu_init
    except ImportError:  # private module moved: fall back to the env-var signals only
        return False
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def detect_cluster(environ: Mapping[str, str], on_cloud_tpu_vm: bool) -> str | None:
    """Names the multi-process environment described by `environ`, or None for one process.

    Returns one of "explicit", "slurm", "openmpi", "tpu" or None. Raises ValueError when
    the explicit JAX_* variables are only partly set or not integers.
    """
    explicit = [name for name in _EXPLICIT_VARS if name in environ]
    if "JAX_NUM_PROCESSES" in environ or "JAX_PROCESS_ID" in environ:
        if len(explicit) != len(_EXPLICIT_VARS):
            missing = sorted(set(_EXPLICIT_VARS) - set(explicit))
            raise ValueError(f"set all of {', '.join(_EXPLICIT_VARS)} or none; missing {', '.join(missing)}")
        num_processes = _int_var(environ, "JAX_NUM_PROCESSES")
        process_id = _int_var(environ, "JAX_PROCESS_ID")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"JAX_PROCESS_ID={process_id} is outside [0, JAX_NUM_PROCESSES={num_processes})")
        return "explicit" if num_processes > 1 else None
    if all(name in environ for name in _SLURM_VARS):
        return "slurm" if _int_var(environ, "SLURM_NTASKS") > 1 else None
    if "OMPI_MCA_orte_hnp_uri" in environ and "OMPI_COMM_WORLD_SIZE" in environ:
        return "openmpi" if _int_var(environ, "OMPI_COMM_WORLD_SIZE") > 1 else None
    if on_cloud_tpu_vm:
        hosts = environ.get("TPU_PROCESS_ADDRESSES", environ.get("TPU_WORKER_HOSTNAMES"))
        slices = int(environ.get("MEGASCALE_NUM_SLICES") or 1)
        if hosts is not None:  # GKE: the worker list is in the environment
            return "tpu" if len(hosts.split(",")) > 1 or slices > 1 else None
        if "TPU_SKIP_MDS_QUERY" in environ:  # JAX will not read the metadata server
            return None
        return "tpu"  # GCE TPU VM: JAX reads the worker list from the metadata server
    return None


def maybe_initialize() -> None:
    """Calls `jax.distributed.initialize()` when this is one of several processes.

    Call it first thing, before any JAX operation. A no-op on a single host and when
    already initialized (idempotent). Raises ValueError for inconsistent JAX_* variables.
    """
    if jax.distributed.is_initialized():
        return
    cluster = detect_cluster(os.environ, _running_in_cloud_tpu_vm())
    if cluster is None:
        return
    logging.getLogger(__name__).info("joining a multi-process run (%s environment)", cluster)
    if cluster == "explicit":
        jax.distributed.initialize(os.environ["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    else:  # JAX's own cluster detection fills in coordinator, count and id
        jax.distributed.initialize()


def initialize_local(coordinator: str, num_processes: int, process_id: int,
                     local_devices: int) -> None:
    """Joins a multi-process run of CPU processes, e.g. on one machine over loopback.

    Args:
      coordinator: "host:port" where process 0 serves (e.g. "127.0.0.1:12345").
      num_processes: how many processes take part.
      process_id: this process, in [0, num_processes).
      local_devices: simulated CPU devices in this process; the global device count is
        num_processes * local_devices.
    Must run before any JAX operation. Idempotent: a second call does nothing.
    """
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", local_devices)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def describe() -> str:
    """One log line: 'process i/n, devices L local / G global, platform P (kind)'."""
    device = jax.local_devices()[0]
    return (f"process {jax.process_index()}/{jax.process_count()}, devices "
            f"{jax.local_device_count()} local / {jax.device_count()} global, "
            f"platform {device.platform} ({device.device_kind})")
