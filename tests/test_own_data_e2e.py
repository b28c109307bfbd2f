"""Own recaptioned data end to end (slow tier): img2dataset tars + a Recap-DataComp-style parquet +
a DreamLIP-style CSV → build_shards → train_tokenizer → 50 steps each of recap / mix / multi →
retrieval on a held-out conversion; a conversion killed with SIGKILL, restarted, ending
byte-identical to an uninterrupted one; DataCompDR's teacher embeddings training a distilled student.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.fake_download import make_download, make_dreamlip_csv, make_recap_table
from tests.helpers.tiny import tiny_config

pytestmark = pytest.mark.slow
pytest.importorskip("pyarrow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def tool(name, *args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "data", name), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kwargs)


def run_tool(name, *args):
    proc = tool(name, *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def table_args(tmp_path):
    return ["--captions", tmp_path / "recap.parquet", "--join", "url", "--caption", "short=re_caption",
            "--caption", "org=org_caption",
            "--captions", tmp_path / "dreamlip.csv", "--join", "Image Path=url", "--caption", "long=longSV_captions",
            "--caption", "short_dl=shortSV_captions"]


def test_convert_train_tokenizer_train_and_evaluate(tmp_path):
    from bigvl.train.loop import train_and_evaluate
    from bigvl.train.metrics_log import read_metrics
    planted = make_download(tmp_path / "dl", shards=4, per_shard=40, corrupt=((1, 3),), failed=((0, 5), (2, 7)))
    recap = set(make_recap_table(tmp_path / "recap.parquet", planted))
    dreamlip = set(make_dreamlip_csv(tmp_path / "dreamlip.csv", planted))
    train_keys = {k for k in planted["samples"] if not k.startswith("00003")}
    summary = run_tool("build_shards.py", "--images", tmp_path / "dl" / "0000[0-2].tar", "--out", tmp_path / "train",
                       *table_args(tmp_path), "--workers", 2)
    m = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert summary["written"] == m["written"] == len(train_keys)
    assert m["samples_read"] == len(train_keys) + 1 and m["bad"]["by_kind"] == {"undecodable image": 1}
    assert m["failed_downloads"]["count"] == 2
    assert [t["joined"] for t in m["tables"]] == [len(recap & train_keys), len(dreamlip & train_keys)]
    assert [t["not_joined"] for t in m["tables"]] == [len(train_keys - recap), len(train_keys - dreamlip)]
    run_tool("build_shards.py", "--images", tmp_path / "dl" / "00003.tar", "--out", tmp_path / "eval",
             *table_args(tmp_path))
    tok = run_tool("train_tokenizer.py", "--shards", tmp_path / "train" / "train-*.array_record",
                   "--vocab_size", 512, "--out", tmp_path / "train" / "tokenizer.model")
    assert tok["records_read"] == len(train_keys) and tok["texts"]["long"] == len(dreamlip & train_keys)

    for strategy in ("recap", "mix", "multi"):
        c = tiny_config(tmp_path, total_steps=50, ckpt_steps=50, log_steps=10, batch_size=16)
        c.data.train_paths = [str(tmp_path / "train" / "train-*.array_record")]
        c.data.tokenizer = str(tmp_path / "train" / "tokenizer.model")
        c.data.caption_strategy, c.data.caption_field = strategy, "short"
        c.data.multi_field, c.data.multi_k = "long", 2
        c.optim.lr, c.optim.schedule = 2e-3, "constant"
        if strategy == "multi":  # one evaluation (its encoders compile once): the held-out conversion
            c.evals.retrieval.update(split=str(tmp_path / "eval" / "train-00000-000.array_record"), field="alt")
        workdir = tmp_path / f"run_{strategy}"
        start = time.time()
        metrics = train_and_evaluate(c, str(workdir))
        print(f"{strategy}: 50 steps in {time.time() - start:.1f} s")
        rows = read_metrics(str(workdir))
        losses = [r["loss"] for r in rows if "loss" in r]
        assert len(losses) == 5 and all(math.isfinite(x) for x in losses)
        if strategy == "multi":
            assert 0.0 <= metrics["retrieval/t2i_r1"] <= 1.0 and "retrieval/i2t_r5" in metrics
        # recap/mix/multi need a caption the tables give to only some records: the others are skipped and counted
        skipped = sum(r.get("data_skipped", 0) for r in rows)
        assert skipped > 0


def test_killed_conversion_restarts_byte_identical(tmp_path):
    make_download(tmp_path / "dl", shards=12, per_shard=24, size=160, corrupt=(), failed=())
    args = ["--images", tmp_path / "dl" / "*.tar", "--max_side", 64, "--shard_size", 10]
    run_tool("build_shards.py", *args, "--out", tmp_path / "reference", "--workers", 2)
    out = tmp_path / "killed"
    # the whole process group: the Beam pipeline's driver and, with --workers > 1, its worker processes
    proc = tool("build_shards.py", *args, "--out", out, "--workers", 2, start_new_session=True)
    deadline = time.time() + 120
    while not (out / ".stats" / "00001.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [n for n in os.listdir(out / ".stats") if n[:5].isdigit() and n.endswith(".json")]
    assert 0 < len(done) < 12, f"the kill came too late or too early: {len(done)} units done"
    summary = run_tool("build_shards.py", *args, "--out", out, "--workers", 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_units"] == len(done) and summary["written"] == 12 * 24

    def shards(d):
        return {n: (d / n).read_bytes() for n in sorted(os.listdir(d)) if n.endswith(".array_record")}
    reference = shards(tmp_path / "reference")
    assert len(reference) == 36 and shards(out) == reference
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_datacompdr_teacher_embeddings_train_a_distilled_student(tmp_path):
    from bigvl.train.loop import train_and_evaluate
    from bigvl.train.metrics_log import read_metrics
    from tests.helpers.fake_download import make_datacompdr
    planted = make_download(tmp_path / "dl", shards=2, per_shard=24, corrupt=(), failed=())
    make_datacompdr(tmp_path / "dr", planted)
    run_tool("build_shards.py", "--images", tmp_path / "dl" / "*.tar", "--out", tmp_path / "train",
             "--datacompdr", tmp_path / "dr" / "*.tar")
    run_tool("train_tokenizer.py", "--shards", tmp_path / "train" / "train-*.array_record",
             "--vocab_size", 512, "--out", tmp_path / "train" / "tokenizer.model")
    c = tiny_config(tmp_path, total_steps=10, ckpt_steps=10, log_steps=5, batch_size=16)
    c.data.train_paths = [str(tmp_path / "train" / "train-*.array_record")]
    c.data.tokenizer = str(tmp_path / "train" / "tokenizer.model")
    c.data.caption_strategy, c.data.mix_p, c.data.caption_field = "mix", 0.5, "syn_2"
    c.loss.distill_weight = 0.5
    train_and_evaluate(c, str(tmp_path / "run"))
    rows = [r for r in read_metrics(str(tmp_path / "run")) if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["distill_loss"]) and r["distill_loss"] > 0 for r in rows)
    assert sum(r.get("data_skipped", 0) for r in rows) == 0  # every text has its stored teacher embedding
