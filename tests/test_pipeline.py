"""The grain pipeline: shapes, determinism, host sharding, resumable state, faulty records."""
import io

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
from PIL import Image

from bigvl.data.pipeline import make_train_dataset, resolve_paths
from bigvl.data.records import decode_example, encode_example
from bigvl.data.tokenizer import Tokenizer
from tests.helpers.tiny import tiny_config


def _batches(config, n, host=0, hosts=1):
    it = iter(make_train_dataset(config, host, hosts))
    return [next(it) for _ in range(n)]


def _records(world):
    out = []
    for path in resolve_paths([str(world / "train-*.array_record")]):
        reader = ArrayRecordReader(path)
        out.extend(decode_example(r) for r in reader.read_all())
        reader.close()
    return out


def test_batch_shapes_and_alt_text_tokens(tiny_world):
    config = tiny_config(tiny_world)
    config.data.caption_strategy = "alt"
    batch = _batches(config, 1)[0]
    assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["tokens"].shape == (16, 1, 16) and batch["tokens"].dtype == np.int32
    records = _records(tiny_world)
    tokenizer = Tokenizer(config.data.tokenizer)
    expected = tokenizer.encode([records[i]["alt_text"] for i in batch["index"]], 16)
    np.testing.assert_array_equal(batch["tokens"][:, 0], expected)
    assert len(set(batch["index"].tolist())) == 16  # a shuffled sample without repeats


def test_recap_uses_the_synthetic_caption(tiny_world):
    config = tiny_config(tiny_world)
    config.data.caption_strategy, config.data.caption_field = "recap", "short"
    batch = _batches(config, 1)[0]
    records = _records(tiny_world)
    expected = Tokenizer(config.data.tokenizer).encode(
        [records[i]["captions"]["short"] for i in batch["index"]], 16)
    np.testing.assert_array_equal(batch["tokens"][:, 0], expected)


def test_same_seed_same_stream_other_seed_other_stream(tiny_world):
    config = tiny_config(tiny_world)
    a, b = _batches(config, 3), _batches(config, 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    config.seed = 1
    c = _batches(config, 1)
    assert not np.array_equal(a[0]["index"], c[0]["index"])


def test_two_hosts_read_disjoint_halves_of_the_same_global_batches(tiny_world):
    config = tiny_config(tiny_world)
    single = _batches(config, 3)
    host0, host1 = _batches(config, 3, 0, 2), _batches(config, 3, 1, 2)
    for s, h0, h1 in zip(single, host0, host1):
        assert h0["image"].shape[0] == 8
        for key in s:
            np.testing.assert_array_equal(s[key], np.concatenate([h0[key], h1[key]]))


def test_iterator_state_restores_the_same_next_batches(tiny_world):
    config = tiny_config(tiny_world)
    it = iter(make_train_dataset(config))
    for _ in range(2):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    fresh = iter(make_train_dataset(config))
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_faulty_records_are_skipped(tiny_world, tmp_path, caplog):
    good = [encode_example({"id": f"ok/{i}", "image": _jpeg(i), "alt_text": "a red circle",
                            "captions": {"short": "a red circle"}}) for i in range(12)]
    bad = [
        encode_example({"id": "bad/jpeg", "image": _jpeg(99)[:40], "alt_text": "x", "captions": {}}),
        encode_example({"id": "bad/empty_alt", "image": _jpeg(98), "alt_text": " ", "captions": {}}),
        encode_example({"id": "bad/zero_image", "image": b"\0", "alt_text": "x", "captions": {}}),
        b"\x93not a record",
        encode_example({"id": "bad/utf8", "image": _jpeg(97), "alt_text": "x", "captions": {}})
        .replace(b"\xa1x", b"\xa1\xff"),  # alt_text bytes are not UTF-8
    ]
    path = tmp_path / "mixed.array_record"
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for record in good + bad:
        writer.write(record)
    writer.close()
    config = tiny_config(tiny_world)
    config.data.train_paths, config.data.caption_strategy, config.batch_size = [str(path)], "alt", 4
    seen = set()
    it = iter(make_train_dataset(config))
    for _ in range(6):  # two epochs of the 12 good records
        seen.update(next(it)["index"].tolist())
    assert seen == set(range(12))
    assert "skipping record #12" in caplog.text and "skipping record #15" in caplog.text


def test_missing_paths_name_the_pattern():
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        resolve_paths(["/tmp/nothing-here/*.array_record"])


def test_multi_text_strategy_emits_t_texts_per_image(tiny_world):
    config = tiny_config(tiny_world)
    config.data.caption_strategy, config.data.multi_k = "multi", 3
    batch = _batches(config, 1)[0]
    assert batch["tokens"].shape == (16, 4, 16)  # raw alt-text + 3 sentences of the long caption
    records = _records(tiny_world)
    expected = Tokenizer(config.data.tokenizer).encode([records[i]["alt_text"] for i in batch["index"]], 16)
    np.testing.assert_array_equal(batch["tokens"][:, 0], expected)
