"""The run directory's start-up check (`check_workdir`): writable, and room on its disk, before
anything compiles. A bucket (`gs://...`) is checked by writing and deleting one object."""
from __future__ import annotations

import os
import shutil
import tempfile

from bigvl.parallel.storage import is_url, run_path


def _nearest_existing(path: str) -> str:
    """`path` itself if it exists, else its nearest existing ancestor."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_workdir(workdir: str, min_free_bytes: int) -> None:
    """Raises ValueError (one line) unless `workdir` can be created and written, with room to spare.

    Probes the workdir, or where it does not exist yet its nearest existing parent, by
    creating and deleting a directory holding a file (so both `mkdir` and writing work
    there); then asks `shutil.disk_usage` for the free bytes of that disk: fewer than
    `min_free_bytes` (config key min_free_disk_gb) is an error. Leaves nothing behind.
    A URL workdir (`gs://bucket/run`): an object `.bigvl-write-probe-<pid>` is written and
    deleted there (a missing bucket or no permission is the error); buckets have no free-space limit.
    """
    if is_url(workdir):
        probe = run_path(workdir) / f".bigvl-write-probe-{os.getpid()}"
        try:
            probe.write_text("0")
            probe.unlink()
        except Exception as e:  # noqa: BLE001 (gcsfs raises OSError, google.auth and aiohttp errors)
            raise ValueError(f"workdir {workdir}: cannot write there ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0][:200]})") from e
        return
    existing = _nearest_existing(workdir)
    if not os.path.isdir(existing):
        raise ValueError(f"workdir {workdir}: cannot be created, {existing} is not a directory")
    try:
        probe = tempfile.mkdtemp(dir=existing, prefix=".bigvl-write-probe-")
        try:
            with open(os.path.join(probe, "probe"), "wb") as f:
                f.write(b"0")
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    except OSError as e:
        raise ValueError(f"workdir {workdir}: cannot write in {existing} ({e.strerror or e})") from e
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        raise ValueError(f"workdir {workdir}: only {_format_bytes(free)} free on its disk; need ≥ "
                         f"{_format_bytes(min_free_bytes)} (config key min_free_disk_gb)")
