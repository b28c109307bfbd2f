"""`--workdir gs://test-bucket/run` end to end on a local GCS emulator: the CLI trains, is killed with
kill -9, resumes from the bucket to the same bits as an uninterrupted local run, evaluates, exports.

Every process is a real command (`python -m bigvl.main / bigvl.evaluate / bigvl.convert export`) with
the emulator's variables in its environment (tests/helpers/gcs_emulator.py), so the clients are the
ones a pod uses: orbax through tensorstore's GCS driver, etils.epath through gcsfs, tensorboardX
through google-cloud-storage, array_record's own gs:// reader for the shards.
"""
import json
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.helpers.gcs_emulator import GcsEmulator
from tests.helpers.xla_env import ROOT, subprocess_env

pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

STEPS, CKPT = 30, 5
CONFIG = """
import pathlib
from tests.helpers.tiny import tiny_config


def get_config(arg=None):
    world = pathlib.Path({world!r})
    c = tiny_config(world, total_steps={steps}, ckpt_steps={ckpt}, log_steps=1)
    c.data.train_paths = [{shards!r}]
    c.evals.zeroshot.update(split=str(world / "zeroshot.array_record"), classes=str(world / "zeroshot_classes.json"))
    c.evals.retrieval.split = str(world / "retrieval.array_record")
    return c
"""


def _run(args, env, timeout=600):
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _steps_saved(bucket):
    import gcsfs
    fs = gcsfs.GCSFileSystem()
    fs.invalidate_cache()
    try:
        names = [p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/checkpoints")]
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and fs.exists(f"{bucket}/checkpoints/{n}/commit_success.txt"))


@pytest.mark.slow
def test_gs_workdir_trains_survives_kill_9_resumes_bitwise_evaluates_and_exports(tiny_world, tmp_path, monkeypatch):
    from bigvl.inference.run import load_run
    from bigvl.train.example_ids import ids_path, read_ids
    from bigvl.train.metrics_log import read_metrics

    with GcsEmulator() as gcs:
        gcs.apply(monkeypatch)
        env = subprocess_env(8, **gcs.env)
        bucket, local = "gs://test-bucket/run", str(tmp_path / "local")
        from etils import epath
        for shard in sorted(tiny_world.glob("train-*.array_record")):  # the shards read from the bucket too
            epath.Path(f"gs://test-bucket/shards/{shard.name}").write_bytes(shard.read_bytes())
        configs = {}
        for name, shards in (("local", str(tiny_world / "train-*.array_record")),
                             ("bucket", "gs://test-bucket/shards/train-*.array_record")):
            configs[name] = tmp_path / f"{name}.py"
            configs[name].write_text(CONFIG.format(world=str(tiny_world), steps=STEPS, ckpt=CKPT, shards=shards))

        _run(["bigvl.main", "--config", str(configs["local"]), "--workdir", local], env)  # uninterrupted, on disk

        train = ["bigvl.main", "--config", str(configs["bucket"]), "--workdir", bucket]
        proc = subprocess.Popen([sys.executable, "-m", *train], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 400
            while not _steps_saved(bucket):
                assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint reached the bucket"
                time.sleep(0.2)
            proc.kill()  # kill -9: no handler runs, async saves and unflushed logs are cut off
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        saved = _steps_saved(bucket)
        assert saved and max(saved) < STEPS, saved

        resumed = _run(train, env)
        output = resumed.stdout + resumed.stderr
        assert any(f"restored checkpoint at step {step}" in output for step in saved), output[-3000:]
        print(f"killed with steps {saved} finished in the bucket; "
              f"{[line for line in output.splitlines() if 'restored checkpoint' in line]}")

        for a, b in zip(jax.tree.leaves(load_run(local).params), jax.tree.leaves(load_run(bucket).params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        losses = {name: {r["step"]: r["loss"] for r in read_metrics(w) if "loss" in r}
                  for name, w in (("local", local), ("bucket", bucket))}
        assert losses["bucket"] == losses["local"] and len(losses["local"]) == STEPS
        assert read_ids(ids_path(bucket, 0, 1)) == read_ids(ids_path(local, 0, 1))
        final = {w: json.loads(epath.Path(w, "final_metrics.json").read_text()) for w in (local, bucket)}
        assert final[bucket] == final[local] and final[local]["step"] == STEPS
        assert list(epath.Path(bucket, "tb").glob("events.out.tfevents.*"))

        evals = {w: json.loads(_run(["bigvl.evaluate", "--workdir", w], env).stdout) for w in (local, bucket)}
        assert evals[bucket] == evals[local] and "zeroshot/top1" in evals[bucket]

        for w, out in ((local, tmp_path / "export_local"), (bucket, tmp_path / "export_bucket")):
            _run(["bigvl.convert", "export", "--workdir", w, "--to", "open_clip", "--out", str(out),
                  "--hf_tokenizer_name", "demo-world-tokenizer"], env)  # the world's sentencepiece: not open_clip's BPE
        files = sorted(p.name for p in (tmp_path / "export_bucket").iterdir())
        assert files and all((tmp_path / "export_bucket" / f).read_bytes() == (tmp_path / "export_local" / f).read_bytes()
                             for f in files if f.endswith(".safetensors"))
