"""The benchmark commands on tiny inputs: their JSON records have the promised keys and sane values."""
import json
import math

import numpy as np

from bigvl.tools.benchmarks import input_pipeline, train_step
from bigvl.models.flops import model_flops_per_pair

TINY_CONFIG = '''
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from tiny import tiny_config

def get_config():
    return tiny_config(Path("/no/world/needed"))  # the benchmark reads no data
'''


def test_train_step_benchmark_prints_a_sane_record(tmp_path, capsys):
    config_file = tmp_path / "tiny_bench.py"
    config_file.write_text(TINY_CONFIG.format(tests=str(__import__("pathlib").Path(__file__).parent)))
    code = train_step.main(["--config", str(config_file), "--steps", "2", "--warmup", "0", "--peak", "1e12",
                            "--config.loss.name=sigmoid", "--config.model.bias_init=-10.0"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    record = json.loads(lines[0])
    assert "pairs_per_s" in "\n".join(lines[1:])  # the readable table follows
    assert record["steps"] == 2 and record["devices"] == 8 and record["batch_size"] == 16
    assert record["loss"] == "sigmoid"
    assert record["step_time_min_s"] <= record["step_time_s"] and record["compile_s"] > 0
    assert math.isclose(record["pairs_per_s"], 16 / record["step_time_s"])
    from tiny import tiny_config
    flops = model_flops_per_pair(tiny_config(tmp_path).model)
    assert math.isclose(record["model_flops_per_pair"], flops["train"])
    assert math.isclose(record["mfu"], record["pairs_per_s"] * flops["train"] / (1e12 * 8))
    # params, gradients and two Adam moments, float32, replicated on every device (data parallel)
    assert record["peak_memory_bytes"] >= 4 * 4 * record["num_params"]
    assert np.isfinite(record["loss_first"]) and np.isfinite(record["loss_last"])


def test_train_step_benchmark_rejects_a_bad_key(tmp_path, capsys):
    assert train_step.main(["--config", "configs/demo.py", "--config.optim.nope=1"]) == 2
    assert "optim.nope" in capsys.readouterr().err


def test_input_pipeline_benchmark_runs_bigvl_example_path(tmp_path):
    items = input_pipeline.make_jpegs(str(tmp_path), num=6, size=96)
    assert input_pipeline.make_jpegs(str(tmp_path), num=6, size=96) == items  # reused, not rewritten
    record = input_pipeline.bigvl_pairs_per_s(str(tmp_path), items, crop=64, context=16, repeats=1)
    assert record["image_shape"] == [64, 64, 3] and record["image_dtype"] == "uint8"
    assert record["tokens_shape"] == [1, 16]
    assert math.isclose(record["pairs_per_s"], 6 / record["seconds"])
