"""A built wheel is the whole product: outside the clone, `python -m bigvl` lists the commands and
`python -m bigvl.main --config demo` trains from the configs and class-name files the wheel ships."""
import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.helpers.xla_env import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True, timeout=600)
    (path,) = out.glob("bigvl-*.whl")
    return path


def test_the_wheel_ships_configs_and_class_names(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"bigvl/configs/{p.name}" for p in (ROOT / "configs").glob("*.py")}
    assert shipped <= names, sorted(shipped - names)
    assert any(n.startswith("bigvl/evaluators/suites/classnames/") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "experiments/", "data/")) for n in names)
    assert any(n.endswith("LICENSE") for n in names)


def test_the_wheel_trains_the_demo_outside_the_clone(wheel, tmp_path):
    """Unpacked and run with `python -S` (so the clone's editable install is not on the path: its
    .pth hook is not read), from a directory that is not the clone."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    run = tmp_path / "elsewhere"
    run.mkdir()

    def bigvl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", *args], cwd=run, env=env, capture_output=True, text=True,
                              timeout=timeout)

    located = bigvl("-c", "import bigvl; print(bigvl.__file__)")
    assert located.stdout.startswith(str(site)), located.stdout + located.stderr
    listing = bigvl("-m", "bigvl", "--help")
    assert listing.returncode == 0 and "bigvl train" in listing.stdout and "demo" in listing.stdout, listing.stderr
    trained = bigvl("-m", "bigvl.main", "--config", "demo", "--workdir", "w", "--config.total_steps=4",
                    "--config.log_steps=2", "--config.world.dir=world", "--config.world.num_train=256",
                    "--config.batch_size=32", "--config.evals.batch_size=64", "--config.progress_bar=False")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (run / "w" / "final_metrics.json").is_file() and (run / "w" / "results.md").is_file()
