"""Start-up workdir checks: a workdir that cannot be written or a full disk stop the run in one line."""
import collections
import os
import re
import subprocess
import sys
import tempfile

import pytest

from bigvl.train import workdir_checks
from bigvl.train.workdir_checks import check_workdir
from tests.helpers.xla_env import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Usage = collections.namedtuple("Usage", "total used free")


def test_a_new_workdir_passes_and_nothing_is_left_behind(tmp_path):
    check_workdir(str(tmp_path / "runs" / "a"), min_free_bytes=1)
    assert os.listdir(tmp_path) == []  # neither the probe nor the workdir itself


def test_a_workdir_under_a_file_cannot_be_created(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"file.txt/workdir: cannot be created, .*file.txt is not a directory"):
        check_workdir(str(tmp_path / "file.txt" / "workdir"), min_free_bytes=1)


def test_an_unwritable_parent_is_reported(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):  # what mkdir in a read-only dir does for a non-root user
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(ValueError, match=rf"workdir {tmp_path}/wd: cannot write in {tmp_path} "
                                         r"\(Permission denied\)"):
        check_workdir(str(tmp_path / "wd"), min_free_bytes=1)


def test_too_little_free_space_names_both_sizes_and_the_config_key(tmp_path, monkeypatch):
    free = int(12.3 * 2**20)
    monkeypatch.setattr(workdir_checks.shutil, "disk_usage", lambda path: Usage(2**40, 2**40 - free, free))
    with pytest.raises(ValueError) as e:
        check_workdir(str(tmp_path), min_free_bytes=2**30)
    assert str(e.value) == (f"workdir {tmp_path}: only 12.3 MiB free on its disk; need ≥ 1.0 GiB "
                            "(config key min_free_disk_gb)")
    check_workdir(str(tmp_path), min_free_bytes=free)  # exactly enough is enough


def _run_main(*args, tmp_path, world, workdir):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "synthetic_world_seed0").symlink_to(world)  # configs/demo.py reads its world from here
    env = subprocess_env(8, BIGVL_CACHE=str(cache))
    cmd = [sys.executable, "-m", "bigvl.main", "--config", "configs/demo.py", "--workdir", workdir,
           "--config.world.build=false", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,workdir,message", [
    (["--config.min_free_disk_gb=1e9"], "wd", r"wd: only .* free on its disk; need ≥ 976562.5 TiB "
                                              r"\(config key min_free_disk_gb\)"),
    ([], "file.txt/wd", r"file.txt/wd: cannot be created, .*file.txt is not a directory"),
])
def test_cli_stops_before_compiling(tiny_world, tmp_path, args, workdir, message):
    (tmp_path / "file.txt").write_text("x")
    result = _run_main(*args, tmp_path=tmp_path, world=tiny_world, workdir=str(tmp_path / workdir))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and lines[0].startswith("error: workdir "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not os.path.exists(tmp_path / "wd")  # nothing ran
