"""The XLA flags every test process compiles with, and the environment of the processes tests start.

Tests compile hundreds of tiny programs and run each a few times, so compiling is most of their
time, and LLVM's optimisation passes are most of compiling. At `--xla_backend_optimization_level=0`
the fast tier took 5 min 30 s against 8 min 10 s at XLA's default (2 cores, 2026-12-01 03:32 and
03:49 UTC, load 0.5 and 0.8 at the start), and test_grad_accumulation.py 73-87 s against 102 s
(04:15, idle). It changes floats by rounding (the generated loops differ), so a process
a test compares bitwise with its own must compile with the same flags: start it with
`subprocess_env`. The notebook test (its training's run time dominates), the speed probes and
bigvl itself compile at XLA's default level.
"""
import os

COMPILE_FLAGS = "--xla_backend_optimization_level=0"


def xla_flags(devices: int | None = 8) -> str:
    """XLA_FLAGS for a test process: the compile flags, and `devices` simulated CPU devices (None: JAX's own count)."""
    if devices is None:
        return COMPILE_FLAGS
    return f"{COMPILE_FLAGS} --xla_force_host_platform_device_count={devices}"


def subprocess_env(devices: int | None = 8, **extra: str) -> dict[str, str]:
    """This process's environment with the tests' XLA_FLAGS (see xla_flags) and `extra` set."""
    return {**os.environ, "XLA_FLAGS": xla_flags(devices), **extra}
