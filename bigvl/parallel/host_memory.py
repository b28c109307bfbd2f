"""Keep freed host memory for reuse on a CPU-only machine, so a compiled step does not page-fault.

XLA's CPU runtime allocates an executable's temporary buffer afresh on every call: for
the S64 CLIP train step at batch 64 that is 1.15 GB, for the demo's 0.42 GB. glibc's
malloc serves a block that large with a new `mmap` and returns it with `munmap`, so every
step touches ~290,000 new pages, and the kernel's page faults and zeroing cost ~0.9 CPU-s a
step (measured: docs/results/cpu_speed.md). With one malloc arena, no `mmap` for large blocks
and no trimming, the freed buffer stays in the heap and the next step reuses it: no faults.

The settings are process-wide and only take effect for threads that have not allocated yet,
so `reuse_freed_host_memory` must run before JAX starts its backend (entry points call it
first). It does nothing on an accelerator host (one arena would make the input pipeline's
threads contend), outside glibc, or with BIGVL_HOST_MALLOC=default.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import platform

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# mallopt(3): a trim threshold of -1 disables trimming (freed memory is never given back). A
# positive int caps at 2 GiB, and a larger top chunk (B/16's 2.7 GB step buffer) would be trimmed.
NEVER_TRIM = -1
ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/accel[0-9]*", "/dev/vfio/[0-9]*", "/dev/kfd")
ENV = "BIGVL_HOST_MALLOC"  # "reuse" (on even with an accelerator present) | "default" (off) | unset (auto)


def accelerator_present() -> bool:
    """Whether JAX may pick an accelerator: JAX_PLATFORMS names one, or a GPU/TPU device node exists."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
    return any(glob.glob(pattern) for pattern in ACCELERATOR_NODES)


def reuse_freed_host_memory() -> bool:
    """Sets glibc malloc to keep and reuse freed memory (one arena, no mmap, no trim); returns
    whether it did. Call before JAX's first operation. Off on accelerator hosts, non-glibc
    systems and with BIGVL_HOST_MALLOC=default; BIGVL_HOST_MALLOC=reuse forces it on."""
    choice = os.environ.get(ENV, "")
    if choice not in ("", "reuse", "default"):
        raise ValueError(f"{ENV}={choice!r}: expected 'reuse', 'default' or unset")
    if choice == "default" or (choice == "" and accelerator_present()):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # mallopt returns 1 on success; all three or the step still faults (docs/results/cpu_speed.md).
    return all(libc.mallopt(param, value) == 1
               for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
