"""One process of a multi-process CPU run of `bigvl.main` (driven by test_multihost.py).

    python tests/helpers/multihost_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID LOCAL_DEVICES -- MAIN_ARGS...
"""
import sys

from bigvl.parallel.distributed import initialize_local

if __name__ == "__main__":
    coordinator, num_processes, process_id, local_devices = sys.argv[1:5]
    assert sys.argv[5] == "--"
    if int(num_processes) > 1:
        initialize_local(coordinator, int(num_processes), int(process_id), int(local_devices))
    else:
        import jax  # local: only the one-process case configures JAX here
        jax.config.update("jax_num_cpu_devices", int(local_devices))
    from bigvl.main import main  # local: after initialize_local / the device count, as bigvl's CLI does
    sys.exit(main(sys.argv[6:]))
