"""Launching the trainer as several local processes (tests/helpers/multihost_worker.py), for the multi-host tests."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import portpicker

from tests.helpers.xla_env import ROOT, subprocess_env

WORKER = os.path.join(ROOT, "tests", "helpers", "multihost_worker.py")


def tiny_config_file(tmp_path, world) -> str:
    """A config file whose get_config() is tests/helpers/tiny.py's tiny_config over `world` (the workers
    import tests.helpers from the clone's root, which subprocess_env puts on PYTHONPATH)."""
    path = tmp_path / "tiny.py"
    path.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from tests.helpers.tiny import tiny_config
        def get_config():
            return tiny_config(Path({str(world)!r}))
    """))
    return str(path)


def launch(num_processes: int, local_devices: int, workdir, config: str, *overrides: str) -> list[tuple[int, str]]:
    """Runs bigvl.main as `num_processes` processes of `local_devices` CPU devices each (gloo);
    returns each process's (exit status, output)."""
    port = portpicker.pick_unused_port()
    env = subprocess_env(None)  # the clone's root on PYTHONPATH: bigvl without pip install -e, tests.helpers
    args = ["--config", config, "--workdir", str(workdir), *overrides]
    procs = [subprocess.Popen([sys.executable, WORKER, f"127.0.0.1:{port}", str(num_processes), str(i),
                               str(local_devices), "--", *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(num_processes)]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out) for p, out in zip(procs, outputs)]
