"""The XLA flags every test process compiles with, and the environment of the processes tests start.

Tests compile hundreds of tiny programs and run each a few times, so compiling is most of their
time, and LLVM's optimisation passes are most of compiling. Run back to back, the fast tier took
8 min 07 s at `--xla_backend_optimization_level=0` against 12 min 00 s at XLA's default (2 cores,
2026-12-01 04:59 and 04:45 UTC, load below 0.6 at each start; the host's speed drifts within the
hour, so only a back-to-back pair compares). It changes floats by rounding (the generated loops
differ), so a process a test compares bitwise with its own must compile with the same flags: start
it with `subprocess_env`, which also puts the clone's root on PYTHONPATH, so the child imports
`bigvl`, `tests.helpers`, `benchmarks` and `experiments` from this clone whatever its cwd or script
path. The notebook test (its training's run time dominates), the speed probes and
bigvl itself compile at XLA's default level.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPILE_FLAGS = "--xla_backend_optimization_level=0"


def xla_flags(devices: int | None = 8) -> str:
    """XLA_FLAGS for a test process: the compile flags, and `devices` simulated CPU devices (None: JAX's own count)."""
    if devices is None:
        return COMPILE_FLAGS
    return f"{COMPILE_FLAGS} --xla_force_host_platform_device_count={devices}"


def subprocess_env(devices: int | None = 8, **extra: str) -> dict[str, str]:
    """This process's environment with the tests' XLA_FLAGS (see xla_flags), the clone's root first on
    PYTHONPATH, and `extra` set."""
    pythonpath = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "XLA_FLAGS": xla_flags(devices), "PYTHONPATH": pythonpath, **extra}
