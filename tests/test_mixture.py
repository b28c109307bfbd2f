"""data.sources: weighted mixtures in the loader (bigvl/data/mixture.py through bigvl/data/pipeline.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bigvl.config import validate
from bigvl.config.errors import ConfigError
from bigvl.data.mixture import RealisedProportions, source_specs
from bigvl.data.pipeline import make_train_dataset, resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.data.tokenizer import Tokenizer
from tests.helpers.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mixed_config(world, weights=(0.75, 0.25)):
    """Two sources: the first train shard with alt-texts, the others with the short captions."""
    config = tiny_config(world)
    paths = resolve_paths(config.data.train_paths)
    config.data.train_paths = []
    config.data.sources = [dict(name="web", paths=paths[:1], weight=weights[0], caption_strategy="alt"),
                           dict(name="recap", paths=paths[1:], weight=weights[1], caption_strategy="recap",
                                caption_field="short")]
    return config


def test_proportions_within_binomial_error_and_each_source_its_own_texts(tiny_world):
    config = mixed_config(tiny_world)
    validate(config)
    paths = resolve_paths([str(tiny_world / "train-*.array_record")])
    first = [decode_example(r) for r in read_records(paths[0])]
    rest = [decode_example(r) for p in paths[1:] for r in read_records(p)]
    it = iter(make_train_dataset(config))
    batches = [next(it) for _ in range(6)]
    state = it.get_state()
    batches += [next(it) for _ in range(2)]
    resumed = iter(make_train_dataset(config))
    resumed.set_state(state)  # restored in this process (after a kill: the slow test below)
    np.testing.assert_array_equal(next(resumed)["index"], batches[6]["index"])
    index = np.concatenate([b["index"] for b in batches])
    assert "source" not in batches[0]
    n, p = len(index), 0.75
    web = index < len(first)  # the second source's ids are offset by the first's size
    assert abs(web.mean() - p) <= 3 * np.sqrt(p * (1 - p) / n)
    tokenizer = Tokenizer(config.data.tokenizer)
    b = batches[0]
    texts = [first[i]["alt_text"] if i < len(first) else rest[i - len(first)]["captions"]["short"] for i in b["index"]]
    np.testing.assert_array_equal(b["tokens"][:, 0], tokenizer.encode(texts, b["tokens"].shape[-1]))


def test_realised_proportions_are_counted_and_the_key_removed():
    counter = RealisedProportions(source_specs({"sources": [dict(name="a", paths=["x"], weight=3),
                                                            dict(name="b", paths=["y"])]}))
    out = counter({"source": np.array([0, 0, 1, 0], np.int32), "index": np.arange(4)})
    assert set(out) == {"index"} and counter.proportions() == {"a": 0.75, "b": 0.25}
    assert counter.expected == [0.75, 0.25]


@pytest.mark.parametrize("entry, key", [(dict(paths=["x"], weight=0), "data.sources[0].weight"),
                                        (dict(paths="x"), "data.sources[0].paths"),
                                        (dict(paths=["x"], captionstrategy="alt"), "data.sources[0].captionstrategy")])
def test_a_bad_source_is_one_error_naming_its_key(tiny_world, entry, key):
    config = tiny_config(tiny_world)
    config.data.train_paths, config.data.sources = [], [entry]
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(config)


KILLED = """
import json, os, signal, sys
from tests.helpers.tiny import tiny_config
from tests.test_mixture import mixed_config
from bigvl.data.pipeline import make_train_dataset
import pathlib
it = iter(make_train_dataset(mixed_config(pathlib.Path(sys.argv[1]))))
for _ in range(3):
    next(it)
pathlib.Path(sys.argv[2]).write_text(json.dumps(it.get_state()))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow  # a subprocess importing JAX and grain: ~5-15 s
def test_a_killed_reader_resumes_the_same_mixed_stream(tiny_world, tmp_path):
    state_file = tmp_path / "state.json"
    run = subprocess.run([sys.executable, "-c", KILLED, str(tiny_world), str(state_file)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-2000:]
    config = mixed_config(tiny_world)
    it = iter(make_train_dataset(config))
    expected = [next(it) for _ in range(5)][3:]
    resumed = iter(make_train_dataset(config))
    resumed.set_state(json.loads(state_file.read_text()))
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
