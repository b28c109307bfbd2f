"""tpu_scripts/: shellcheck, the gcloud lines --dry-run prints, flag errors, --help, and a
launch → tail → stop round trip where a stand-in `gcloud` runs the worker command locally.

--dry-run lines are parsed back with shlex (as a user's shell would read them when pasted),
so the checks are on the exact argv gcloud would receive.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "tpu_scripts"
SCRIPT_NAMES = ["common.sh", "create.sh", "install.sh", "launch.sh", "tail.sh", "stop.sh", "delete.sh",
                "supervise.sh", "mount.sh"]  # supervise.sh's own tests: tests/test_supervise.py
TPU = ["--name", "my-tpu", "--zone", "us-east5-a"]
FAIL_IF_CALLED = '#!/usr/bin/env bash\necho "$(basename "$0") must not run under --dry-run" >&2\nexit 99\n'


@pytest.fixture
def no_tools_path(tmp_path):
    """PATH where `gcloud` and `git` fail loudly, so --dry-run must not call them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "git"):
        (bin_dir / tool).write_text(FAIL_IF_CALLED)
        (bin_dir / tool).chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def run_script(name, *args, path=None, env=None):
    full_env = {**os.environ, **(env or {})}
    if path:
        full_env["PATH"] = path
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def dry_run(name, *args, path):
    """The argv of each command `name --dry-run` prints."""
    result = run_script(name, "--dry-run", *args, path=path)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def flag(argv, name):
    """The value of --name=VALUE in argv."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, argv
    return values[0]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_shellcheck_is_clean(name):
    result = subprocess.run(["shellcheck", "-x", name], cwd=SCRIPTS, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_script_is_listed_and_executable():
    assert sorted(p.name for p in SCRIPTS.glob("*.sh")) == sorted(SCRIPT_NAMES)
    for name in SCRIPT_NAMES[1:]:
        assert os.access(SCRIPTS / name, os.X_OK), name
        assert "set -euo pipefail" in (SCRIPTS / name).read_text()


def test_create_tpu_vm(no_tools_path):
    [argv] = dry_run("create.sh", *TPU, "--type", "v5p-64", path=no_tools_path)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu"]
    assert flag(argv, "zone") == "us-east5-a"
    assert flag(argv, "accelerator-type") == "v5p-64"
    assert flag(argv, "version") == "v2-alpha-tpuv5"
    assert "--spot" not in argv


def test_create_queued_resource(no_tools_path):
    [argv] = dry_run("create.sh", *TPU, "--type=v6e-32", "--queued", "--spot", "--project", "proj",
                     "--", "--network=net", path=no_tools_path)
    assert argv[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "my-tpu"]
    assert flag(argv, "node-id") == "my-tpu"
    assert flag(argv, "accelerator-type") == "v6e-32"
    assert flag(argv, "runtime-version") == "v2-alpha-tpuv6e"
    assert flag(argv, "project") == "proj"
    assert "--spot" in argv and "--network=net" in argv


def test_create_best_effort_uses_gcloud_alpha(no_tools_path):
    [argv] = dry_run("create.sh", *TPU, "--type", "v5litepod-16", "--queued", "--best-effort",
                     "--version", "my-version", path=no_tools_path)
    assert argv[:5] == ["gcloud", "alpha", "compute", "tpus", "queued-resources"]
    assert "--best-effort" in argv and flag(argv, "runtime-version") == "my-version"


def test_install_ships_the_checkout(no_tools_path):
    archive, scp, ssh = dry_run("install.sh", *TPU, path=no_tools_path)
    assert archive[0] == "git" and "archive" in archive and archive[-1] == "HEAD"
    tarball = archive[archive.index("-o") + 1]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5] == tarball and scp[6] == "my-tpu:bigvl.tar.gz"
    assert flag(scp, "worker") == "all" and flag(scp, "zone") == "us-east5-a"
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert flag(ssh, "worker") == "all"
    remote = flag(ssh, "command")
    assert "tar -xzf bigvl.tar.gz -C bigvl" in remote
    assert remote.endswith('python3 -m pip install -e ".[tfds,gcs]" "jax[tpu]"')


def test_install_from_git(no_tools_path):
    [ssh] = dry_run("install.sh", *TPU, "--git", "https://example.com/bigvl.git", "--branch", "dev",
                    "--", "jax[tpu]==0.10.2", path=no_tools_path)
    remote = flag(ssh, "command")
    assert "git clone --depth 1 --branch dev https://example.com/bigvl.git bigvl" in remote
    assert remote.endswith('"jax[tpu]" "jax[tpu]==0.10.2"')
    assert flag(ssh, "worker") == "all"


def test_launch_quotes_the_command(no_tools_path):
    [ssh] = dry_run("launch.sh", *TPU, "--config", "configs/demo.py", "--workdir", "gs://b/run",
                    "--", "--config.total_steps=10", path=no_tools_path)
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert flag(ssh, "worker") == "all" and flag(ssh, "zone") == "us-east5-a"
    remote = flag(ssh, "command")
    assert ("nohup python3 -m bigvl.main --config configs/demo.py --workdir gs://b/run "
            "--config.total_steps=10 > \"$HOME\"/bigvl.log 2>&1 < /dev/null &") in remote


@pytest.mark.parametrize("args, worker", [([], "0"), (["--worker", "3"], "3"), (["--worker=all"], "all")])
def test_tail(no_tools_path, args, worker):
    [ssh] = dry_run("tail.sh", *TPU, *args, path=no_tools_path)
    assert ssh[4:6] == ["ssh", "my-tpu"] and flag(ssh, "worker") == worker
    assert flag(ssh, "command").startswith('tail -n 100 -F "$HOME"/bigvl.log')


@pytest.mark.parametrize("args, kind, extra", [([], "tpu-vm", []),
                                               (["--queued", "--yes"], "queued-resources", ["--force", "--quiet"])])
def test_delete(no_tools_path, args, kind, extra):
    [argv] = dry_run("delete.sh", *TPU, *args, path=no_tools_path)
    assert argv[:6] == ["gcloud", "compute", "tpus", kind, "delete", "my-tpu"]
    assert flag(argv, "zone") == "us-east5-a" and all(e in argv for e in extra)


def test_stop(no_tools_path):
    [ssh] = dry_run("stop.sh", *TPU, path=no_tools_path)
    assert flag(ssh, "worker") == "all" and "kill" in flag(ssh, "command")


@pytest.mark.parametrize("name, args, message", [
    ("create.sh", [], "--name is required"),
    ("create.sh", ["--name", "a", "--zone", "z"], "--type is required"),
    ("create.sh", [*TPU, "--type", "v99-8"], "no default --version"),
    ("create.sh", [*TPU, "--type", "v5p-8", "--best-effort"], "--best-effort needs --queued"),
    ("install.sh", ["--name", "a"], "--zone is required"),
    ("install.sh", [*TPU, "--dir", "../elsewhere"], "--dir must be a plain relative path"),
    ("launch.sh", [*TPU, "--workdir", "gs://b"], "--config is required"),
    ("launch.sh", [*TPU, "--config", "c.py"], "--workdir is required"),
    ("launch.sh", [*TPU, "--config", "c.py", "--workdir", "gs://b", "--env", "1=x"], "--env needs KEY=VALUE"),
    ("tail.sh", ["--zone", "z"], "--name is required"),
    ("tail.sh", [*TPU, "--worker", "first"], "--worker must be"),
    ("stop.sh", ["--name", "a"], "--zone is required"),
    ("delete.sh", ["--zone", "z"], "--name is required"),
    ("delete.sh", [*TPU, "--nmae", "x"], "unknown argument '--nmae'"),
    ("delete.sh", ["--name"], "--name needs a value"),
])
def test_bad_flags_fail_with_one_line(no_tools_path, name, args, message):
    result = run_script(name, "--dry-run", *args, path=no_tools_path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize("name", SCRIPT_NAMES[1:])
def test_help(no_tools_path, name):
    result = run_script(name, "--help", path=no_tools_path)
    assert result.returncode == 0
    assert f"Usage: {name} --name NAME --zone ZONE" in result.stdout and "--dry-run" in result.stdout


FAKE_GCLOUD = """#!/usr/bin/env bash
# Stands in for `gcloud compute tpus tpu-vm ssh ... --command=CMD`: runs CMD here, in $HOME.
for arg in "$@"; do
  case $arg in --command=*) cd "$HOME" && exec bash -c "${arg#--command=}" ;; esac
done
echo "fake gcloud: no --command in: $*" >&2; exit 98
"""
FAKE_MAIN = """import json, os, sys, time
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("MY_FLAG")}), flush=True)
time.sleep(60)
"""


def test_launch_tail_stop_round_trip(tmp_path):
    """The worker command really starts `python3 -m bigvl.main` with the exact arguments."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    (home / "bigvl" / "bigvl").mkdir(parents=True)
    (home / "bigvl" / "bigvl" / "__init__.py").write_text("")
    (home / "bigvl" / "bigvl" / "main.py").write_text(FAKE_MAIN)
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    env = {"HOME": str(home), "PYTHONPATH": ""}
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    overrides = ["--config.note=it's a \"test\" $HOME `x`", "--config.lr=0.1"]
    launch = [*TPU, "--config", "configs/demo.py:variant=B/16", "--workdir", "gs://b/r 1",
              "--env", "MY_FLAG=a b", "--", *overrides]
    pid_file = home / "bigvl.pid"
    try:
        result = run_script("launch.sh", *launch, path=path, env=env)
        assert result.returncode == 0, result.stderr
        assert "started pid" in result.stdout
        log = home / "bigvl.log"
        for _ in range(100):
            if log.exists() and log.read_text().strip():
                break
            time.sleep(0.1)
        record = json.loads(log.read_text().splitlines()[0])
        assert record == {"argv": ["--config", "configs/demo.py:variant=B/16", "--workdir", "gs://b/r 1",
                                   *overrides],
                          "cwd": str(home / "bigvl"), "env": "a b"}

        again = run_script("launch.sh", *launch, path=path, env=env)
        assert again.returncode != 0 and "still running" in again.stderr

        tail = run_script("tail.sh", *TPU, "--no-follow", path=path, env=env)
        assert tail.returncode == 0 and tail.stdout.splitlines()[0] == log.read_text().splitlines()[0]

        pid = int(pid_file.read_text())
        stop = run_script("stop.sh", *TPU, path=path, env=env)
        assert stop.returncode == 0 and f"sent SIGTERM to {pid}" in stop.stdout
        assert not pid_file.exists()
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_mount_uses_the_read_heavy_gcsfuse_options(no_tools_path):
    [ssh] = dry_run("mount.sh", *TPU, "--bucket", "gs://my-data/", path=no_tools_path)
    assert flag(ssh, "worker") == "all"
    remote = flag(ssh, "command")
    gcsfuse = remote.split("; gcsfuse ", 1)[1].split(";")[0].split()
    assert gcsfuse[:2] == ["-o", "ro"] and gcsfuse[-2:] == ["my-data", "/gcs/my-data"]
    assert {"--implicit-dirs", "--file-cache-max-size-mb=-1", "--file-cache-cache-file-for-range-read=true",
            "--file-cache-enable-parallel-downloads=true", "--metadata-cache-ttl-secs=-1",
            "--cache-dir=/tmp/gcsfuse-cache/my-data"} <= set(gcsfuse)
    assert "apt-get install -y -q gcsfuse" in remote and "mountpoint -q /gcs/my-data" in remote
    [ssh] = dry_run("mount.sh", *TPU, "--bucket", "my-data", "--read-write", "--mount-point", "/mnt/d", path=no_tools_path)
    assert "gcsfuse --implicit-dirs" in flag(ssh, "command") and "my-data /mnt/d;" in flag(ssh, "command")


REGION_GCLOUD = """#!/usr/bin/env bash
# Stands in for gcloud: `storage buckets describe` prints $BUCKET_LOCATION; anything else succeeds silently.
if [[ $1 == storage ]]; then echo "$BUCKET_LOCATION"; fi
"""


@pytest.mark.parametrize("location, warned", [("US-EAST5", False), ("US-CENTRAL1", True), ("US", True)])
def test_launch_warns_once_when_the_bucket_is_in_another_region(tmp_path, location, warned):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(REGION_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    result = run_script("launch.sh", *TPU, "--config", "demo", "--workdir", "gs://my-runs/r1",
                        path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", env={"BUCKET_LOCATION": location})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == int(warned), result.stderr
    if warned:
        assert f"gs://my-runs is in {location.lower()}, the TPU in us-east5-a" in warnings[0]
