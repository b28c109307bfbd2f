"""The benchmark commands on tiny inputs: their JSON records have the promised keys and sane values."""
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import input_pipeline, train_step

TINY_CONFIG = '''
from pathlib import Path
from tests.helpers.tiny import tiny_config

def get_config():
    return tiny_config(Path("/no/world/needed"))  # the benchmark reads no data
'''


@pytest.mark.slow
def test_train_step_benchmark_prints_a_sane_record(tmp_path, capsys):
    config_file = tmp_path / "tiny_bench.py"
    config_file.write_text(TINY_CONFIG)
    code = train_step.main(["--config", str(config_file), "--steps", "2", "--warmup", "0", "--peak", "1e12",
                            "--config.loss.name=sigmoid", "--config.model.bias_init=-10.0",
                            "--against", "model.pooled_last_block=False"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    record, full = [json.loads(line) for line in lines if line.startswith("{")]
    tables = "\n".join(lines).split("\n{")  # each record, then its readable table
    assert len(tables) == 2 and all("pairs_per_s  " in t for t in tables)
    assert full["config"].endswith("--config.model.pooled_last_block=False") and full["loss"] == "sigmoid"
    assert full["steps"] == 2 and full["step_time_ratio"] == full["step_time_s"] / record["step_time_s"]
    assert record["steps"] == 2 and record["devices"] == 8 and record["batch_size"] == 16
    assert record["loss"] == "sigmoid"
    assert record["step_time_min_s"] <= record["step_time_s"] and record["compile_s"] > 0
    assert math.isclose(record["pairs_per_s"], 16 / record["step_time_s"])
    # tests/helpers/tiny.py's CLIP, one text per image, counted by hand (2·rows·inner·cols per matmul):
    image = (2 * 16 * 192 * 32  # patch embedding: 16 patches of 8·8·3 → 32
             + 2 * (2 * 17 * 32 * 96 + 2 * 2 * 17 * 17 * 32 + 2 * 17 * 32 * 32 + 2 * 2 * 17 * 32 * 64)  # 2 layers
             + 2 * 32 * 16)  # projection
    text = 2 * (2 * 16 * 32 * 96 + 2 * 2 * 16 * 16 * 32 + 2 * 16 * 32 * 32 + 2 * 2 * 16 * 32 * 64) + 2 * 32 * 16
    assert (image, text) == (828672, 590848)
    assert full["model_flops_per_pair"] == 3 * (828672 + 590848) == 4258560
    # The default: the last layer computes k, v of every position and the rest for the pooled one.
    last_image = 2 * 17 * 32 * 64 + 2 * 32 * 32 + 2 * 2 * 17 * 32 + 2 * 32 * 32 + 2 * 2 * 32 * 64
    last_text = 2 * 16 * 32 * 64 + 2 * 32 * 32 + 2 * 2 * 16 * 32 + 2 * 32 * 32 + 2 * 2 * 32 * 64
    image -= (2 * 17 * 32 * 96 + 2 * 2 * 17 * 17 * 32 + 2 * 17 * 32 * 32 + 2 * 2 * 17 * 32 * 64) - last_image
    text -= (2 * 16 * 32 * 96 + 2 * 2 * 16 * 16 * 32 + 2 * 16 * 32 * 32 + 2 * 2 * 16 * 32 * 64) - last_text
    assert record["model_flops_per_pair"] == 3 * (image + text)
    assert math.isclose(record["mfu"], record["pairs_per_s"] * 3 * (image + text) / (1e12 * 8))
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


def fake_bench(config, num_texts: int, batch_keys: tuple[str, ...]) -> SimpleNamespace:
    """What `train_step.summarise` reads of a CompiledStep, without compiling anything."""
    device = SimpleNamespace(platform="cpu", device_kind="cpu", memory_stats=lambda: None)
    memory = SimpleNamespace(argument_size_in_bytes=0, temp_size_in_bytes=0, output_size_in_bytes=0,
                             alias_size_in_bytes=0)
    return SimpleNamespace(config=config, mesh=SimpleNamespace(devices=np.array([device]), shape={"data": 1}),
                           compiled=SimpleNamespace(memory_analysis=lambda: memory), num_texts=num_texts,
                           num_params=0, compile_s=0.0, batch={k: None for k in batch_keys})


def test_train_step_flops_count_every_text_and_the_decoder(tmp_path):
    from tests.helpers.tiny import tiny_config
    from tests.test_flops import tiny as tiny_model  # the tiny models hand-counted in tests/test_flops.py
    config = tiny_config(tmp_path)
    config.model.pooled_last_block = False  # every position, as the hand count above
    # Two texts per image: tests/helpers/tiny.py's CLIP, image 828,672 and 590,848 per text (see above).
    record = train_step.summarise(fake_bench(config, 2, ("image", "tokens")), [0.5], [1.0], peak=1e12)
    assert record["model_flops_per_pair"] == 3 * (828672 + 2 * 590848)
    assert math.isclose(record["mfu"], 32 * 3 * (828672 + 2 * 590848) / 1e12)  # 16 pairs in 0.5 s, 1 device
    # CoCa, two texts: image 10,464, text 2 × 4,672; the decoder 14,752 with the batch's caption
    # target (4 tokens), 7,104 when it captions the first text (3 tokens).
    with config.unlocked():
        config.model = tiny_model("coca")
    record = train_step.summarise(fake_bench(config, 2, ("image", "tokens", "target_tokens")), [0.5], [1.0], 1e12)
    assert record["model_flops_per_pair"] == 3 * (10464 + 2 * 4672 + 14752)
    record = train_step.summarise(fake_bench(config, 2, ("image", "tokens")), [0.5], [1.0], 1e12)
    assert record["model_flops_per_pair"] == 3 * (10464 + 2 * 4672 + 7104)


def test_tools_find_the_checkouts_configs():
    """The tools that read configs/ resolve it from their own location (benchmarks/ and experiments/ sit beside
    configs/ in the clone)."""
    from benchmarks import open_clip_compare
    from experiments import ablation, reliability
    assert os.path.isfile(reliability.DEMO)
    assert os.path.isfile(os.path.join(ablation.ROOT, "configs", "recipe_demo.py"))
    assert os.path.isfile(open_clip_compare.CLIP_B16)
