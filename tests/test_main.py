"""Bad input to the CLI: one line on stderr naming the problem, exit 2, nothing compiled."""
import os
import subprocess
import sys

import pytest

from tests.helpers.xla_env import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, tmp_path):
    env = subprocess_env(8, BIGVL_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "bigvl.main", "--config", "configs/demo.py",
           "--workdir", str(tmp_path / "wd"), "--config.world.build=false", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--config.optim.lrr=0.1"], "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    (["--config.mesh.data=3"], "does not"),
    (["--config.batch_size=100"], "batch_size 100 is not divisible"),
    (["--config.data.train_paths=['/nonexistent/train-*.array_record']"], "/nonexistent/train-*.array_record"),
    (["--config.total_steps=abc"], "'total_steps' expects int"),
    (["--config.loss.name=sigmoid"], "needs a learnable logit bias: set model.bias_init"),
    (["--bogus"], "unrecognised argument '--bogus'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = run_main(*args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) <= 2, result.stderr  # argparse prints usage + the error line
    assert message in lines[-1]
    assert not os.path.exists(tmp_path / "wd" / "checkpoints")  # nothing ran


def test_no_readable_train_shard_is_one_line_and_exit_2(tiny_world, tmp_path):
    empty = tmp_path / "train-00000-of-00001.array_record"
    empty.write_bytes(b"")  # a shard that does not open (zero bytes, as after a failed copy)
    result = run_main(f"--config.data.train_paths=['{empty}']",
                      f"--config.data.tokenizer={tiny_world / 'tokenizer.model'}",
                      "--config.evals.zeroshot.split=", "--config.evals.zeroshot.classes=",
                      "--config.evals.retrieval.split=", "--config.evals.long_retrieval.split=",
                      "--config.evals.hard_negatives.split=", "--config.evals.pointing.split=", tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert lines[-1].startswith("error: data.train_paths: none of the 1 shards is readable"), result.stderr
    assert f"leaving out unreadable shard {empty}" in result.stderr and len(lines) == 2
    assert not os.path.exists(tmp_path / "wd" / "checkpoints")


def test_missing_pointing_split_is_caught_before_training(tiny_world, tmp_path):
    result = run_main(f"--config.data.train_paths=['{tiny_world / 'train-*.array_record'}']",
                      f"--config.data.tokenizer={tiny_world / 'tokenizer.model'}",
                      "--config.evals.zeroshot.split=", "--config.evals.zeroshot.classes=",
                      "--config.evals.retrieval.split=", "--config.evals.long_retrieval.split=",
                      "--config.evals.hard_negatives.split=",
                      "--config.evals.pointing.split=/nonexistent/p.array_record",
                      tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: evals.pointing.split: no file matches '/nonexistent/p.array_record'"


def test_preflight_checks_the_file_options_each_evaluator_type_declares(tiny_world):
    from bigvl.main import preflight
    from tests.helpers.tiny import tiny_config
    config = tiny_config(tiny_world)
    config.evals.held_out = dict(type="zeroshot", split=str(tiny_world / "zeroshot.array_record"),
                                 classes="/nonexistent/classes.json")
    with pytest.raises(FileNotFoundError, match="evals.held_out.classes: no file matches '/nonexistent/classes.json'"):
        preflight(config)
    config.evals.held_out.split = ""  # off: its files are not read
    preflight(config)
