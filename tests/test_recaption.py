"""Recaptioning shards (bigvl/inference/recaption.py, data/recaption.py): fields, manifest, determinism, resume."""
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest

from bigvl.data.records import decode_example, encode_example, read_records, write_records
from bigvl.inference.decoding import DecodeConfig
from bigvl.inference.recaption import MANIFEST, is_degenerate, recaption, record_key
from tests.helpers.xla_env import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_captioner(tiny_world):
    """A Run of a randomly initialised 1-layer CoCa (16 px, 64-id vocabulary) with the world's tokenizer."""
    import jax

    from bigvl.config import base_config
    from bigvl.data.tokenizer import Tokenizer
    from bigvl.inference.encoder import make_encoder
    from bigvl.inference.run import Run
    from bigvl.parallel.mesh import DEFAULT_RULES, make_mesh
    from tests.helpers.captioner_models import build, tiny_model_config
    model, params, _ = build("coca")
    config = base_config()
    config.model = tiny_model_config("coca")
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    params = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    encoder = make_encoder(model, params, Tokenizer(str(tiny_world / "tokenizer.model")), config.model, mesh,
                           tuple(DEFAULT_RULES), 8)
    return Run(config=config, step=0, model=model, params=params, encoder=encoder)


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory):
    """3 shards of 16 of the world's train records; the second lacks captions on odd positions and
    holds an undecodable record (5) and an undecodable image (7)."""
    records = [r for p in sorted(glob.glob(str(tiny_world / "train-*.array_record"))) for r in read_records(p)][:48]
    d = tmp_path_factory.mktemp("shards")
    second = []
    for i, data in enumerate(records[16:32]):
        rec = decode_example(data)
        second.append(encode_example({**rec, "captions": {}}) if i % 2 else data)
    second[5] = b"not a record"
    second[7] = encode_example({**decode_example(second[7]), "image": b"not a JPEG"})
    for k, part in enumerate([records[:16], second, records[32:]]):
        write_records(d / f"part-{k}.array_record", part)
    return sorted(str(p) for p in d.glob("*.array_record"))


SAMPLE = DecodeConfig(method="sample", max_length=6, top_p=0.95)


def _outputs(out_dir):
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(f"{out_dir}/*.array_record"))}


def test_is_degenerate_hand_cases():
    assert is_degenerate("a b a b a b")  # the 2-gram "a b" at 3 positions
    assert is_degenerate("red red red red circle")  # 4 in a row
    assert is_degenerate("the red circle and the red circle and the red circle")  # a 3-gram 3 times
    assert is_degenerate("x y z w q x y z w p x y z w")  # a 4-gram 3 times
    assert not is_degenerate("a red circle left of a blue circle")  # "a" twice, no n-gram 3 times
    assert not is_degenerate("red red red circle")  # 3 in a row
    assert not is_degenerate("a b a b")  # "a b" at 2 positions
    assert not is_degenerate("")


def test_record_key_is_sha256_of_seed_and_id():
    digest = hashlib.sha256(b"7/train_000012").digest()
    want = [int.from_bytes(digest[0:4], "little"), int.from_bytes(digest[4:8], "little")]
    assert record_key(7, "train_000012").tolist() == want
    assert record_key(8, "train_000012").tolist() != want


def test_recaption_fields_manifest_and_only_missing(tiny_captioner, shards, tmp_path):
    out = tmp_path / "out"
    manifest = recaption(tiny_captioner, shards, str(out), "gen", SAMPLE, seed=3, batch_size=8,
                         only_missing="short", progress=False, workdir="run")
    assert sorted(_outputs(out)) == [os.path.basename(p) for p in shards]
    decoded, copied, faulty, lengths, empty, degenerate = 0, 0, 0, [], [], []
    for path in shards:
        before, after = read_records(path), read_records(str(out / os.path.basename(path)))
        assert len(before) == len(after)
        for i, (a, b) in enumerate(zip(before, after)):
            try:
                ra = msgpack.unpackb(a, raw=False)
            except Exception:  # the undecodable record: copied byte for byte
                ra = None
            if ra is None or ra["image"] == b"not a JPEG":
                assert a == b
                faulty += 1
                continue
            rb = msgpack.unpackb(b, raw=False)
            gen = rb["captions"].pop("gen")
            assert {k: v for k, v in rb.items() if k != "captions"} == {k: v for k, v in ra.items() if k != "captions"}
            assert rb["captions"] == ra["captions"] and rb["image"] == ra["image"]
            if ra["captions"].get("short"):
                assert gen == ra["captions"]["short"]
                copied += 1
            else:
                decoded += 1
                lengths.append(len(gen.split()))
                (empty if not gen.strip() else degenerate if is_degenerate(gen) else []).append(ra["id"])
    assert (manifest["records"], manifest["decoded"], manifest["copied"], manifest["faulty"]) == (48, decoded, copied, 2)
    assert decoded == 6 and copied == 40  # the second shard: 8 odd positions stripped, two of them faulty
    assert [i.rsplit("#", 1)[1] for i in manifest["faulty_ids"]] == ["5", "7"]
    assert (manifest["empty"], manifest["degenerate"]) == (len(empty), len(degenerate))
    assert manifest["empty_ids"] == empty and manifest["degenerate_ids"] == degenerate
    assert manifest["length_words"]["p50"] == pytest.approx(np.percentile(lengths, 50))
    assert manifest["decode"]["method"] == "sample" and manifest["captioner"]["step"] == 0
    assert json.load(open(out / MANIFEST))["records"] == 48


def test_deterministic_across_batch_sizes_and_resumes_after_a_partial_file(tiny_captioner, shards, tmp_path):
    """Sampling with per-record keys: batches of 8 and of 16 (other batch-mates, other padding) give the same bytes."""
    a, b = tmp_path / "a", tmp_path / "b"
    recaption(tiny_captioner, shards, str(a), "gen", SAMPLE, seed=1, batch_size=8, progress=False)
    # b: a finished first shard (with its stats) and a half-written second one, as a killed run leaves them
    first = os.path.basename(shards[0])
    os.makedirs(b / ".recaption")
    shutil.copy(a / first, b / first)
    shutil.copy(a / ".recaption" / (first + ".json"), b / ".recaption" / (first + ".json"))
    (b / (os.path.basename(shards[1]) + ".partial")).write_bytes(b"\0" * 100)
    manifest = recaption(tiny_captioner, shards, str(b), "gen", SAMPLE, seed=1, batch_size=16, progress=False)
    assert manifest["decoded_this_run"] == 30  # the first shard was not decoded again (two records are faulty)
    assert _outputs(a) == _outputs(b)
    assert not glob.glob(str(b / "*.partial"))
    c = tmp_path / "c"
    recaption(tiny_captioner, shards, str(c), "gen", SAMPLE, seed=2, batch_size=8, progress=False)
    assert _outputs(a) != _outputs(c)  # the seed matters


def _tree(out_dir):
    """{relative path: bytes} of every file under out_dir (hidden state included)."""
    return {os.path.relpath(os.path.join(d, n), out_dir): open(os.path.join(d, n), "rb").read()
            for d, _, names in os.walk(out_dir) for n in names}


def test_restart_with_other_options_is_refused_and_writes_nothing(tiny_captioner, shards, tmp_path):
    """A rerun into the same --out with another seed or field stops with one line naming the option
    (old → new) and leaves every file as it was; the same options still resume."""
    out = tmp_path / "out"
    recaption(tiny_captioner, shards[:2], str(out), "gen", SAMPLE, seed=1, batch_size=8, progress=False)
    before = _tree(out)
    for change, named in (({"seed": 2}, "seed 1 → 2"), ({"field": "gen2"}, "field 'gen' → 'gen2'"),
                          ({"only_missing": "short"}, "only_missing '' → 'short'")):
        args = {"field": "gen", "seed": 1, **change}
        with pytest.raises(ValueError) as error:
            recaption(tiny_captioner, shards, str(out), args.pop("field"), SAMPLE, batch_size=8, progress=False,
                      **args)
        message = str(error.value)
        assert "\n" not in message and named in message and "--out" in message, message
        assert _tree(out) == before  # nothing written: not the third shard, not the options, not the manifest
    other = tiny_captioner.__class__(**{**vars(tiny_captioner), "step": 7})  # another checkpoint of the captioner
    with pytest.raises(ValueError, match="captioner.step 0 → 7"):
        recaption(other, shards, str(out), "gen", SAMPLE, seed=1, batch_size=8, progress=False)
    manifest = recaption(tiny_captioner, shards, str(out), "gen", SAMPLE, seed=1, batch_size=16, progress=False)
    assert manifest["decoded_this_run"] == 16 and manifest["records"] == 48  # only the third shard was new
    assert {k: v for k, v in _tree(out).items() if k in before and k.endswith(".array_record")} == \
        {k: v for k, v in before.items() if k.endswith(".array_record")}


def test_coca_refuses_a_condition(tiny_captioner, shards, tmp_path):
    with pytest.raises(ValueError, match="drop --cond"):
        recaption(tiny_captioner, shards, str(tmp_path), "gen", SAMPLE, cond="alt", progress=False)


@pytest.fixture(scope="module")
def trained_coca(tiny_world, tmp_path_factory):
    """(workdir of a tiny CoCa trained 2 steps, a directory of 8 shards of 24 world records)."""
    from bigvl.train.loop import train_and_evaluate
    from tests.helpers.tiny import tiny_config
    tmp = tmp_path_factory.mktemp("trained_coca")
    config = tiny_config(tiny_world, **{"model.kind": "coca", "model.text.depth": 1, "model.decoder.depth": 1,
                                        "model.decoder.context_length": 16, "data.caption_strategy": "recap",
                                        "total_steps": 2, "ckpt_steps": 2})
    train_and_evaluate(config, str(tmp / "coca"))
    records = [r for p in sorted(glob.glob(str(tiny_world / "train-*.array_record"))) for r in read_records(p)]
    (tmp / "src").mkdir()
    for k in range(8):
        write_records(tmp / "src" / f"s-{k}.array_record", records[k * 24:(k + 1) * 24])
    return tmp / "coca", tmp / "src"


def _cli(workdir, src, out):
    return [os.path.join(ROOT, "data", "recaption.py"), "--captioner", str(workdir), "--in",
            str(src / "*.array_record"), "--out", str(out), "--field", "gen", "--method", "sample",
            "--batch_size", "8", "--seed", "5", "--no_progress"]


@pytest.mark.slow
def test_kill_9_and_restart_is_byte_identical(trained_coca, tmp_path):
    """data/recaption.py killed with SIGKILL after its first shard, restarted: the same bytes as one clean run."""
    workdir, src = trained_coca
    env = subprocess_env(None)
    subprocess.run([sys.executable, *_cli(workdir, src, tmp_path / "clean")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([sys.executable, *_cli(workdir, src, tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not glob.glob(str(tmp_path / "killed" / "s-*.array_record")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(glob.glob(str(tmp_path / "killed" / "s-*.array_record")))
    assert 1 <= done_before < 8, "the kill did not land mid-run"
    out = subprocess.run([sys.executable, *_cli(workdir, src, tmp_path / "killed")], check=True, env=env,
                         capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["records"] == 192
    assert _outputs(tmp_path / "clean") == _outputs(tmp_path / "killed")
    assert len(_outputs(tmp_path / "clean")) == 8


@pytest.mark.slow
def test_two_processes_write_their_own_shards_and_match_one(trained_coca, tmp_path):
    """2 processes × 2 CPU devices (gloo): shard i by process i % 2, same bytes as 1 process, one manifest."""
    import portpicker
    workdir, src = trained_coca
    env = subprocess_env(None)
    subprocess.run([sys.executable, *_cli(workdir, src, tmp_path / "one")], check=True, env=env, capture_output=True)
    port = portpicker.pick_unused_port()
    code = ("import runpy, sys; from bigvl.parallel.distributed import initialize_local; "
            f"initialize_local('127.0.0.1:{port}', 2, int(sys.argv[1]), 2); sys.argv = sys.argv[2:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), *_cli(workdir, src, tmp_path / "two")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    stats = {n: json.load(open(tmp_path / "two" / ".recaption" / f"s-{n}.array_record.json")) for n in range(8)}
    assert all(stats[n]["records"] == 24 and stats[n]["process"] == n % 2 for n in stats)
    manifest = json.load(open(tmp_path / "two" / MANIFEST))
    assert (manifest["processes"], manifest["devices_per_process"], manifest["records"]) == (2, 2, 192)
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")


@pytest.mark.slow
def test_cli_restart_with_another_seed_or_field_exits_2_naming_it(trained_coca, tmp_path):
    """data/recaption.py rerun into the same --out with another --seed / --field: exit status 2, one line on
    stderr naming the option (old → new), every file as it was; the same command resumes."""
    workdir, src = trained_coca
    env = subprocess_env(None)
    out = tmp_path / "out"
    subprocess.run([sys.executable, *_cli(workdir, src, out)], check=True, env=env, capture_output=True)
    before = _tree(out)
    assert json.load(open(out / ".recaption" / "options.json"))["captioner"]["step"] == 2
    for flag, value, named in (("--seed", "6", "seed 5 → 6"), ("--field", "gen2", "field 'gen' → 'gen2'")):
        argv = _cli(workdir, src, out)
        argv[argv.index(flag) + 1] = value
        proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
        line = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and line.startswith("recaption: ") and named in line, proc.stderr[-2000:]
        assert "--out" in line and _tree(out) == before
    proc = subprocess.run([sys.executable, *_cli(workdir, src, out)], check=True, env=env, capture_output=True, text=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["decoded"] == 192
    assert _outputs(out) == {k: v for k, v in before.items() if k.endswith(".array_record") and "/" not in k}



@pytest.mark.slow
def test_cli_guidance_and_length_reach_the_decoder_and_the_prompt_is_removed(trained_coca, tmp_path):
    """data/recaption.py --guidance 1 --length 5: options.json records w and the forced "5 words:" ids (the
    world tokenizer's own encoding of the prompt), and no written caption keeps the prompt."""
    from bigvl.data.length_prefix import length_prompt
    from bigvl.data.tokenizer import Tokenizer
    workdir, src = trained_coca
    out = tmp_path / "out"
    argv = _cli(workdir, src, out) + ["--guidance", "1", "--length", "5"]
    argv[argv.index("--method") + 1] = "greedy"
    subprocess.run([sys.executable, *argv], check=True, env=subprocess_env(None), capture_output=True)
    decode = json.load(open(out / ".recaption" / "options.json"))["decode"]
    tokenizer = Tokenizer(json.load(open(workdir / "config.json"))["data"]["tokenizer"])
    prompt = length_prompt(5)
    assert decode["guidance"] == 1.0
    assert decode["prefix"] == [int(t) for t in tokenizer.encode([prompt], 16)[0][:tokenizer.count_tokens(prompt)]]
    captions = [decode_example(d)["captions"]["gen"] for p in sorted(glob.glob(str(out / "*.array_record")))
                for d in read_records(p)]
    assert len(captions) == 192 and not any(c.startswith(prompt.rstrip(":")) for c in captions)
