"""Run directories in a bucket (bigvl/parallel/storage.py and the run-dir modules), against a local GCS emulator.

Each check writes the same thing to a local directory and to `gs://test-bucket/...` on
`gcp-storage-emulator` (tests/helpers/gcs_emulator.py) and compares what reads back; the
checkpoint check round-trips a sharded state through orbax's own GCS path (tensorstore).
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from bigvl.data.pipeline import resolve_paths, scan_shards
from bigvl.inference.checkpoint_format import check_format
from bigvl.parallel.storage import AppendLog, is_url, run_path, write_text
from bigvl.train import checkpoints
from bigvl.train.example_ids import ExampleIdsLog, read_ids
from bigvl.train.metrics_log import MetricsWriter, read_metrics
from bigvl.train.supersede import supersede_after, superseded_path
from bigvl.train.workdir_checks import check_workdir
from tests.helpers.gcs_emulator import GcsEmulator

pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")


@pytest.fixture(scope="module")
def emulator():
    with GcsEmulator(linger=True) as gcs:  # tensorboardX's GCS writer uploads again at exit: the server outlives it
        yield gcs


@pytest.fixture
def bucket(emulator, monkeypatch, request):
    """`gs://test-bucket/<test name>` (a prefix of its own), with every client pointed at the emulator."""
    emulator.apply(monkeypatch)
    return f"gs://test-bucket/{request.node.name}"


def test_paths_keep_urls_and_make_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(run_path("gs://b/run") / "checkpoints") == "gs://b/run/checkpoints"
    assert str(run_path("run")) == str(tmp_path / "run")
    assert is_url("gs://b/x") and not is_url("/tmp/x")


def test_logs_in_a_bucket_read_as_on_disk(bucket, tmp_path):
    """metrics.jsonl, the example-id log and the supersede rule give the same files in a bucket as locally."""
    for workdir in (str(tmp_path), bucket):
        writer, ids = MetricsWriter(workdir), ExampleIdsLog(workdir, 0, 1)
        for step in (1, 2, 3):
            writer.write(step, {"loss": 1.0 / step}, console=False)
            ids.write(step, np.arange(step, step + 2))
        writer.flush()
        ids.flush()
        ids.write(4, np.arange(2))  # unflushed, then stored by close
        writer.close()
        ids.close()
        assert supersede_after(ids.path, 2) == 2
        log = AppendLog(ids.path)  # a resumed run appends to what is stored
        log.write("3 9 9\n")
        log.close()
    local, remote = run_path(tmp_path), run_path(bucket)
    assert read_ids(remote / "example_ids/host_0-of-1.txt") == read_ids(local / "example_ids/host_0-of-1.txt") \
        == [(1, [1, 2]), (2, [2, 3]), (3, [9, 9])]
    assert superseded_path(remote / "example_ids/host_0-of-1.txt").read_text() == "3 3 4\n4 0 1\n"
    assert [{k: r[k] for k in ("step", "loss")} for r in read_metrics(bucket)] == \
        [{k: r[k] for k in ("step", "loss")} for r in read_metrics(str(tmp_path))]
    assert list((remote / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file in the bucket"


def test_checkpoint_round_trip_in_a_bucket(bucket):
    """orbax saves and restores a sharded state in the bucket (tensorstore's GCS driver), with the
    meta item bigvl reads. (Moving a bad step aside copies objects with GCS's rewrite call, which
    the emulator answers 501: not exercised here.)"""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    state = {"w": jax.device_put(jnp.arange(16.0).reshape(8, 2), sharding), "step": jnp.int32(2)}
    iterator = iter(__import__("grain").MapDataset.range(10).to_iter_dataset())
    manager = checkpoints.make_manager(bucket, keep=3)
    for step in (1, 2):
        checkpoints.save(manager, step, state, iterator, batch_size=8)
    manager.wait_until_finished()
    assert check_format(run_path(bucket) / "checkpoints" / "2") == 1
    abstract = checkpoints.abstract_with_shardings(jax.eval_shape(lambda: state), jax.tree.map(lambda x: x.sharding,
                                                                                                state))
    restored = checkpoints.restore_latest(manager, abstract, iterator, batch_size=8)
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(16.0).reshape(8, 2))
    assert restored["w"].sharding == sharding and manager.all_steps() == [1, 2]


def test_workdir_check_and_whole_file_writes_in_a_bucket(bucket):
    check_workdir(bucket, min_free_bytes=2**60)  # buckets: no free-space limit; the probe object is gone
    assert not list(run_path(bucket).glob(".bigvl-write-probe-*"))
    with pytest.raises(ValueError, match="gs://no-such-bucket/run: cannot write there"):
        check_workdir("gs://no-such-bucket/run", 0)
    write_text(f"{bucket}/final_metrics.json", json.dumps({"step": 3}))
    assert json.loads(epath.Path(f"{bucket}/final_metrics.json").read_text()) == {"step": 3}


def test_training_shards_read_from_a_bucket_and_other_urls_are_refused(bucket, tiny_world):
    """array_record opens gs:// shards itself (google-cloud-cpp, pointed at the emulator): the same records."""
    local = resolve_paths([str(tiny_world / "train-*.array_record")])
    for path in local:
        (run_path(bucket) / "shards" / epath.Path(path).name).write_bytes(epath.Path(path).read_bytes())
    remote = resolve_paths([f"{bucket}/shards/train-*.array_record"])
    assert [p.rsplit("/", 1)[1] for p in remote] == [p.rsplit("/", 1)[1] for p in local]
    assert scan_shards(remote).sizes == scan_shards(local).sizes
    from grain.sources import ArrayRecordDataSource
    remote_source, local_source = ArrayRecordDataSource(remote), ArrayRecordDataSource(local)
    assert [remote_source[i] for i in (0, 5, 150)] == [local_source[i] for i in (0, 5, 150)]
    with pytest.raises(FileNotFoundError, match="data.train_paths: no file matches"):
        resolve_paths([f"{bucket}/shards/none-*.array_record"])
    with pytest.raises(ValueError, match="data.tokenizer: 'gs://b/t.model' is a URL"):
        resolve_paths(["gs://b/t.model"], "data.tokenizer")


def test_shard_transform_options_live_in_a_bucket(bucket, tmp_path):
    """`check_options` (curate, recaption, score_captions) stores OUT/.STATE/options.json in the bucket,
    not in a local `gs:` directory, and refuses a restart with other options there as it does locally."""
    from bigvl.inference.shard_transform import OptionsMismatch, check_options, options_path
    for out in (str(tmp_path / "out"), f"{bucket}/out"):
        check_options(out, "curate", {"t": 58, "keep": [1, 2]})
        assert json.loads(run_path(options_path(out, "curate")).read_text()) == {"keep": [1, 2], "t": 58}
        check_options(out, "curate", {"t": 58, "keep": (1, 2)})  # same options as stored: resumes
        with pytest.raises(OptionsMismatch, match=r"t 58 → 20"):
            check_options(out, "curate", {"t": 20, "keep": [1, 2]})
    assert not (tmp_path / "gs:").exists() and not epath.Path("gs:").exists()
