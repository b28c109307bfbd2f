"""Faulty records and shards are skipped, replaced and counted; the stream stays deterministic."""
import logging

import grain
import numpy as np
import pytest

from bigvl.data.pipeline import make_train_dataset, scan_shards
from bigvl.data.records import read_records, write_records
from tests.helpers.data_faults import RECORD_FAULTS, corrupt_chunk, truncate_shard, write_faulty_shard
from tests.helpers.tiny import tiny_config

B = 8


@pytest.fixture(scope="module")
def faulty_data(tiny_world, tmp_path_factory):
    """A shard of 24 good tiny-world records + one record per fault kind (32 records in all)."""
    root = tmp_path_factory.mktemp("faults")
    good = read_records(str(tiny_world / "train-00000-of-00002.array_record"))[:24]
    path = str(root / "faulty.array_record")
    where = write_faulty_shard(good, path)
    return root, path, where


def _config(world, paths, **overrides):
    config = tiny_config(world, batch_size=B, **overrides)
    config.data.train_paths, config.data.caption_strategy = list(paths), "recap"
    return config


def _batches(config, n, host=0, hosts=1):
    it = iter(make_train_dataset(config, host, hosts))
    return [next(it) for _ in range(n)]


def _expected_indices(num_records, bad, seed, positions):
    """Naive reference: the shuffled order of plain indices, a bad record's slot taking the
    first good record at p + k·B; and whether position p's own record was bad."""
    order = grain.MapDataset.range(num_records).seed(seed).shuffle().repeat()
    indices, skipped = [], []
    for p in positions:
        q = p
        while order[q] in bad:
            q += B
        indices.append(order[q])
        skipped.append(int(order[p] in bad))
    return indices, skipped


def test_every_fault_kind_is_skipped_replaced_counted_and_named(tiny_world, faulty_data, caplog):
    _, path, where = faulty_data
    assert len(where) == len(RECORD_FAULTS) == 8
    caplog.set_level(logging.WARNING)
    config = _config(tiny_world, [path])
    batches = _batches(config, 4)  # 32 positions: one epoch, every record once
    indices = np.concatenate([b["index"] for b in batches]).tolist()
    skipped = np.concatenate([b["skipped_records"] for b in batches]).tolist()
    want_indices, want_skipped = _expected_indices(32, set(where.values()), config.seed, range(32))
    assert indices == want_indices and skipped == want_skipped
    assert sum(skipped) == 8 and not set(indices) & set(where.values())
    assert all(b["image"].shape == (B, 32, 32, 3) for b in batches)
    for kind, index in where.items():
        assert f"skipping record #{index}:" in caplog.text, kind


def test_two_hosts_see_the_same_global_batches_with_faults(tiny_world, faulty_data):
    _, path, _ = faulty_data
    config = _config(tiny_world, [path])
    single = _batches(config, 5)
    halves = _batches(config, 5, 0, 2), _batches(config, 5, 1, 2)
    for s, h0, h1 in zip(single, *halves):
        for key in s:
            np.testing.assert_array_equal(s[key], np.concatenate([h0[key], h1[key]]))


def test_restored_iterator_replays_the_same_replacements(tiny_world, faulty_data):
    _, path, _ = faulty_data
    config = _config(tiny_world, [path])
    it = iter(make_train_dataset(config))
    next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    fresh = iter(make_train_dataset(config))
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_counts_come_through_grain_worker_processes(tiny_world, faulty_data):
    _, path, _ = faulty_data
    in_process = _batches(_config(tiny_world, [path]), 4)
    workers = _batches(_config(tiny_world, [path], **{"data.num_workers": 1}), 4)
    for a, b in zip(in_process, workers):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert sum(int(b["skipped_records"].sum()) for b in workers) == 8


def test_truncated_shard_is_named_and_left_out(tiny_world, faulty_data, caplog):
    root, path, where = faulty_data
    truncated = str(root / "truncated.array_record")
    truncate_shard(str(tiny_world / "train-00001-of-00002.array_record"), truncated)
    with pytest.raises(RuntimeError):  # what grain alone does with it: no run at all
        grain.sources.ArrayRecordDataSource([path, truncated])
    caplog.set_level(logging.WARNING)
    shards = scan_shards([truncated, path])
    assert shards.paths == [path] and shards.sizes == [32] and shards.unreadable[0][0] == truncated
    assert f"leaving out unreadable shard {truncated}" in caplog.text
    config = _config(tiny_world, [truncated, path])
    indices = np.concatenate([b["index"] for b in _batches(config, 4)]).tolist()
    want, _ = _expected_indices(32, set(where.values()), config.seed, range(32))
    assert indices == want  # the stream of the readable shard alone
    with pytest.raises(FileNotFoundError, match="none of the 1 shards is readable"):
        scan_shards([truncated])


def test_unreadable_records_inside_a_shard_are_skipped_and_named(tiny_world, tmp_path, caplog):
    src = str(tiny_world / "train-00001-of-00002.array_record")
    damaged = str(tmp_path / "damaged.array_record")
    bad = corrupt_chunk(src, damaged, at=0.4, length=3000)
    n = len(read_records(src))
    assert bad and n == 96
    caplog.set_level(logging.WARNING)
    config = _config(tiny_world, [damaged])
    batches = _batches(config, n // B)  # one epoch
    skipped = np.concatenate([b["skipped_records"] for b in batches])
    assert int(skipped.sum()) == len(bad)
    assert not set(np.concatenate([b["index"] for b in batches]).tolist()) & set(bad)
    assert f"({damaged} position {bad[0]}) unreadable" in caplog.text


def test_all_faulty_data_is_an_error_not_a_hang(tiny_world, tmp_path):
    path = str(tmp_path / "all_bad.array_record")
    template = {"id": "x", "image": b"", "alt_text": "a", "captions": {"short": "a"}}
    write_records(path, [RECORD_FAULTS["zero_byte_image"](template)] * 16)
    with pytest.raises(RuntimeError, match="faulty records in a row"):
        _batches(_config(tiny_world, [path]), 1)
