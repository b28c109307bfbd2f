"""bigvl.parallel.distributed: cluster detection, the single-host no-op and a real 2-process CPU run.

The multi-process test starts two Python processes on loopback, each with 2 simulated CPU
devices; each contributes its own rows of a global [8, 3] array and both must print the
sums numpy computes on the whole array.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import portpicker
import pytest

from bigvl.parallel.distributed import detect_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120

SLURM_4 = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-4]", "SLURM_NTASKS": "4",
           "SLURM_PROCID": "2", "SLURM_LOCALID": "0"}


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without cluster, device-count or platform variables."""
    prefixes = ("SLURM_", "OMPI_", "PMI_", "JAX_", "TPU_", "MEGASCALE_", "CLOUD_TPU_", "XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@pytest.mark.parametrize("environ, on_tpu, expected", [
    ({}, False, None),
    ({"HOME": "/root"}, False, None),
    (SLURM_4, False, "slurm"),
    ({**SLURM_4, "SLURM_NTASKS": "1"}, False, None),
    ({k: v for k, v in SLURM_4.items() if k != "SLURM_PROCID"}, False, None),  # not inside srun
    ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2"}, False, "openmpi"),
    ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "1"}, False, None),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     False, "explicit"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"},
     False, None),
    ({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}, False, None),  # not on a TPU VM: JAX could not join
    ({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3", "TPU_WORKER_ID": "1"}, True, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "w0"}, True, None),
    ({"TPU_WORKER_HOSTNAMES": "w0", "MEGASCALE_NUM_SLICES": "2"}, True, "tpu"),
    ({}, True, "tpu"),  # GCE TPU VM: the worker list is in the metadata
    ({"TPU_SKIP_MDS_QUERY": "1"}, True, None),
])
def test_detect_cluster(environ, on_tpu, expected):
    assert detect_cluster(environ, on_tpu) == expected


@pytest.mark.parametrize("environ, message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "missing JAX_COORDINATOR_ADDRESS"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "outside"),
])
def test_detect_cluster_rejects_bad_explicit_vars(environ, message):
    with pytest.raises(ValueError, match=message):
        detect_cluster(environ, False)


def test_maybe_initialize_is_a_noop_on_one_host():
    code = ("from bigvl.parallel import distributed\n"
            "distributed.maybe_initialize(); distributed.maybe_initialize()\n"
            "import jax\n"
            "print(jax.distributed.is_initialized(), jax.process_count())\n"
            "print(distributed.describe())\n")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(JAX_PLATFORMS="cpu"),
                         capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "False 1"
    assert lines[1].startswith("process 0/1, devices 1 local / 1 global, platform cpu")


WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from bigvl.parallel import distributed

    coordinator, process_id = sys.argv[1], int(sys.argv[2])
    distributed.initialize_local(coordinator, num_processes=2, process_id=process_id, local_devices=2)
    distributed.maybe_initialize()  # already initialised: must be a no-op

    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    rows = np.arange(24, dtype=np.float32).reshape(8, 3)  # the global array (sums exact in f32)
    mine = rows[4 * process_id: 4 * (process_id + 1)]  # this process's rows
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), mine)

    def sums(x):
        weights = jnp.arange(1, 9, dtype=jnp.float32)[:, None]  # checks the rows' order too
        return jnp.stack([x.sum(), (weights * x).sum()])

    result = jax.jit(sums, out_shardings=NamedSharding(mesh, P()))(x)
    total, weighted = np.asarray(result.addressable_data(0)).tolist()
    print(distributed.describe())
    print(f"global_shape={x.shape} total={total:g} weighted={weighted:g}", flush=True)
    jax.distributed.shutdown()
""")


def test_two_processes_reduce_a_global_array():
    port = portpicker.pick_unused_port()
    env = clean_env()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, f"127.0.0.1:{port}", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rows = np.arange(24).reshape(8, 3)
    expected = (f"global_shape=(8, 3) total={rows.sum():g} "
                f"weighted={(np.arange(1, 9)[:, None] * rows).sum():g}")
    for i, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, out
        assert f"process {i}/2, devices 2 local / 4 global, platform cpu" in out, out
        assert expected in out.splitlines(), out
