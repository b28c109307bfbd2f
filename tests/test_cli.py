"""bigvl's front door: `bigvl` lists every command, each `--help` has its purpose and example,
a typo gets the nearest name, and the JAX platform is chosen quietly before JAX starts."""
import os
import subprocess
import sys

import pytest

from bigvl import cli
from bigvl.parallel import process


def test_the_listing_names_every_command_with_its_example(capsys):
    assert cli.main([]) == 0
    listing = capsys.readouterr().out
    for name, command in cli.COMMANDS.items():
        assert f"  {name}  " in listing or f"  {name} " in listing
        assert command.example in listing and command.example.startswith(f"bigvl {name} ")
    assert "demo" in listing  # the shipped configs are listed too


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_command_help_has_purpose_and_example(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    command = cli.COMMANDS[name]
    assert text.startswith(f"usage: bigvl {name}") and command.purpose in text and command.example in text


def test_an_unknown_command_names_the_nearest(capsys):
    assert cli.main(["evalute"]) == 2
    assert "did you mean 'evaluate'" in capsys.readouterr().err


def test_data_scripts_are_the_listed_commands():
    """Every data/*.py script is a command of the listing, and every data command has its script."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scripts = {f"data/{f}" for f in os.listdir(os.path.join(root, "data")) if f.endswith(".py")}
    assert scripts == {c.script for c in cli.COMMANDS.values() if c.script}


@pytest.fixture
def no_tpu(monkeypatch, tmp_path):
    """A machine with libtpu installed and neither TPU nor GPU device nodes."""
    monkeypatch.setattr(process, "TPU_NODES", (str(tmp_path / "accel[0-9]*"),))
    monkeypatch.setattr(process, "GPU_NODES", (str(tmp_path / "nvidia[0-9]*"),))
    monkeypatch.setattr(process.importlib.util, "find_spec", lambda name: object() if name == "libtpu" else None)
    return tmp_path


def test_libtpu_without_a_tpu_runs_on_the_cpu(no_tpu):
    env = {}
    assert process.choose_jax_platform(env) == "cpu" and env == {"JAX_PLATFORMS": "cpu"}


def test_a_platform_the_user_chose_is_kept(no_tpu):
    env = {"JAX_PLATFORMS": "tpu"}
    assert process.choose_jax_platform(env) is None and env == {"JAX_PLATFORMS": "tpu"}


def test_a_tpu_host_is_left_to_jax(no_tpu):
    (no_tpu / "accel0").touch()
    env = {}
    assert process.choose_jax_platform(env) is None and env == {}


def test_a_gpu_host_keeps_cuda(no_tpu, monkeypatch):
    (no_tpu / "nvidia0").touch()
    monkeypatch.setattr(process, "_cuda_plugin_installed", lambda: True)
    env = {}
    assert process.choose_jax_platform(env) == "cuda,cpu"


def test_nothing_changes_without_libtpu(no_tpu, monkeypatch):
    monkeypatch.setattr(process.importlib.util, "find_spec", lambda name: None)
    env = {}
    assert process.choose_jax_platform(env) is None and env == {}


def test_a_bigvl_process_starts_jax_without_tpu_noise():
    """With the `plan` extra installed, JAX started after `import bigvl` prints no libtpu start-up error."""
    pytest.importorskip("libtpu")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TPU_WORKER_HOSTNAMES",
                                                              "TPU_ACCELERATOR_TYPE")}
    # the benchmarks and experiments import jax before bigvl in each module: their packages import bigvl first
    for first in ("bigvl", "benchmarks.train_step", "experiments.ablation"):
        code = f"import {first}, jax; print(jax.devices()[0].platform)"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "cpu"
        assert "TPU" not in out.stderr and "libtpu" not in out.stderr, (first, out.stderr)
