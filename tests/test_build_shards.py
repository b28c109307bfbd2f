"""data/build_shards.py and bigvl/data/ingest: img2dataset downloads + caption tables → records.

Fast: what the manifest counts equals what the fake download (tests/helpers/fake_download.py) planted; joined captions equal the
tables' rows (read back independently); same bytes for any worker count and after a resume;
bad input skipped and counted or stopped with one line. The end-to-end run (tokenizer,
training, evaluation) and the kill -9 restart are in test_own_data_e2e.py (slow).
"""
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from bigvl.data.ingest.convert import ConvertError, ConvertOptions, convert_all, prepare_image
from bigvl.data.ingest.inputs import find_units
from bigvl.data.ingest.manifest import percentiles
from bigvl.data.ingest.tables import TableError, TableSpec, load_table
from bigvl.data.records import decode_example, read_records
from tests.helpers.fake_download import make_download, make_dreamlip_csv, make_recap_table

pytest.importorskip("pyarrow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, os.path.join(REPO, "data", "build_shards.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2d")
    planted = make_download(root / "dl", shards=3, per_shard=10)
    planted["recap"] = make_recap_table(root / "recap.parquet", planted)
    planted["dreamlip"] = make_dreamlip_csv(root / "dreamlip.csv", planted)
    planted["root"] = root
    return planted


def specs(root):
    return [TableSpec.parse(str(root / "recap.parquet"), "url", ["short=re_caption", "org=org_caption"]),
            TableSpec.parse(str(root / "dreamlip.csv"), "Image Path=url", ["long=longSV_captions"])]


def convert(root, out, workers=1, **options):
    units = find_units([str(root / "dl" / "*.tar")], 10000)
    tables = [load_table(s) for s in specs(root)]
    return convert_all(units, tables, ConvertOptions(out=str(out), **options), workers=workers, log=lambda m: None)


def build(units, specs_, out, engine):
    """The manifest of a conversion by the old process pool or the Beam pipeline (build_shards' own)."""
    if engine == "pool":
        return convert_all(units, [load_table(s) for s in specs_], ConvertOptions(out=str(out)), log=lambda m: None)
    pytest.importorskip("apache_beam")
    from bigvl.data.ingest.beam_io import pipeline_options
    from bigvl.data.ingest.pipeline import plan_build, run_build
    plan = plan_build(units, specs_, None, ConvertOptions(out=str(out)), log=lambda m: None)
    return run_build(plan, pipeline_options([], 1), log=lambda m: None)


def shard_bytes(out):
    return {n: (out / n).read_bytes() for n in sorted(os.listdir(out)) if n.endswith(".array_record")}


def test_manifest_counts_what_was_planted_and_captions_are_the_tables(download, tmp_path):
    m = convert(download["root"], tmp_path / "out")
    good = download["samples"]
    assert m["samples_read"] == len(good) + len(download["corrupt"])  # failed downloads have no member
    assert m["written"] == len(good)
    assert m["failed_downloads"] == {"count": 1, "by_reason": {"HTTP 404": 1}}
    assert m["bad"]["count"] == 1 and m["bad"]["by_kind"] == {"undecodable image": 1}
    assert download["corrupt"][0] in m["bad"]["examples"][0][0]
    recap, dreamlip = m["tables"]
    assert (recap["joined"], recap["not_joined"], recap["rows"]) == (len(download["recap"]),
                                                                     len(good) - len(download["recap"]), 24)
    assert (dreamlip["joined"], dreamlip["not_joined"]) == (len(download["dreamlip"]),
                                                            len(good) - len(download["dreamlip"]))
    assert m["coverage"]["short"] == pytest.approx(len(download["recap"]) / len(good), abs=1e-6)
    assert m["duplicate_keys"] == {"dropped_within_unit": 0, "across_units": 0}
    # Read back: every record's captions are its url's row in each table (an independent join).
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    recap_rows = {r["url"]: r for r in pq.read_table(download["root"] / "recap.parquet").to_pylist()}
    dl_rows = {r["Image Path"]: r for r in pcsv.read_csv(download["root"] / "dreamlip.csv").to_pylist()}
    records = [decode_example(r) for n in m["shards"] for r in read_records(str(tmp_path / "out" / n))]
    assert sorted(r["id"] for r in records) == sorted(good)
    words = []
    for r in records:
        s = good[r["id"]]
        assert r["alt_text"] == s["alt"] and r["extras"]["url"] == s["url"] and r["extras"]["uid"] == s["uid"]
        want = {}
        if s["url"] in recap_rows:
            want.update(short=recap_rows[s["url"]]["re_caption"], org=recap_rows[s["url"]]["org_caption"])
        if s["url"] in dl_rows:
            want["long"] = dl_rows[s["url"]]["longSV_captions"]
        assert r["captions"] == want
        words += [len(r["captions"]["long"].split())] if "long" in want else []
    assert m["caption_lengths"]["long"]["words"]["p50"] == np.percentile(words, 50, method="lower")


def test_same_bytes_for_any_worker_count_and_after_a_resume(download, tmp_path):
    convert(download["root"], tmp_path / "a", workers=1)
    convert(download["root"], tmp_path / "b", workers=3)
    a = shard_bytes(tmp_path / "a")
    assert len(a) == 3 and a == shard_bytes(tmp_path / "b")
    # A run killed during unit 1: its stats file is missing and a .tmp file is left; the restart redoes unit 1 only.
    os.remove(tmp_path / "b" / ".stats" / "00001.json")
    os.rename(tmp_path / "b" / "train-00001-000.array_record", tmp_path / "b" / "train-00001-000.array_record.tmp")
    before = os.stat(tmp_path / "b" / "train-00000-000.array_record").st_mtime_ns
    m = convert(download["root"], tmp_path / "b", workers=2)
    assert m["resumed_units"] == 2 and m["written"] == len(download["samples"])
    assert shard_bytes(tmp_path / "b") == a
    assert os.stat(tmp_path / "b" / "train-00000-000.array_record").st_mtime_ns == before
    assert not [n for n in os.listdir(tmp_path / "b") if n.endswith(".tmp")]
    with pytest.raises(ConvertError, match="other options"):
        convert(download["root"], tmp_path / "b", max_side=16)


def test_shard_size_and_max_side(download, tmp_path):
    m = convert(download["root"], tmp_path / "out", shard_size=4, max_side=20)
    assert [len(read_records(str(tmp_path / "out" / n))) for n in m["shards"]] == [4, 4, 1, 4, 4, 1, 4, 4, 2]
    for n in m["shards"][:2]:
        for r in read_records(str(tmp_path / "out" / n)):
            assert Image.open(__import__("io").BytesIO(decode_example(r)["image"])).size == (20, 20)
    small = prepare_image(_png(8, 6), 20)
    assert small == _png(8, 6)  # no larger than max_side: the bytes are kept


def _png(w, h):
    import io
    out = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("engine", ["pool", "beam"])
def test_bad_tars_are_skipped_and_counted(tmp_path, engine):
    planted = make_download(tmp_path / "dl", shards=2, per_shard=6, corrupt=(), failed=())
    data = (tmp_path / "dl" / "00001.tar").read_bytes()
    (tmp_path / "dl" / "00001.tar").write_bytes(data[:len(data) // 2 + 100])  # truncated mid-member
    with tarfile.open(tmp_path / "dl" / "00002.tar", "w") as tar:  # no image, text not UTF-8, bad json
        for name, payload in (("000020000.txt", b"only text"), ("000020001.jpg", _png(4, 4)),
                              ("000020001.txt", b"\xff\xfe bad"), ("000020002.jpg", _png(4, 4)),
                              ("000020002.json", b"{not json")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, __import__("io").BytesIO(payload))
    m = build(find_units([str(tmp_path / "dl" / "*.tar")], 100), [], tmp_path / "out", engine)
    kinds = m["bad"]["by_kind"]
    assert kinds.pop("tar unreadable") == 1
    assert kinds == {"no image member": 1, "text is not UTF-8": 1, "metadata is not a JSON object": 1}
    records = [decode_example(r) for n in m["shards"] for r in read_records(str(tmp_path / "out" / n))]
    in_first = [r for r in records if r["id"].startswith("00000")]
    assert len(in_first) == 6 and m["written"] == len(records)
    truncated = [r["id"] for r in records if r["id"].startswith("00001")]
    assert 1 <= len(truncated) < 6 and all(k in planted["samples"] for k in truncated)


@pytest.mark.parametrize("engine", ["pool", "beam"])
def test_parquet_images_folders_and_list_columns(tmp_path, engine):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [dict(key=f"{i:09d}", jpg=_png(6, 6) if i != 2 else None, txt=f"alt {i}", url=f"u{i}",
                 status="success" if i != 2 else "failed_to_download", error_message=None if i != 2 else "timeout")
            for i in range(4)]
    rows.append({**rows[1], "txt": "a repeated key"})  # dropped, counted
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part.parquet")
    folder = tmp_path / "folder" / "sub"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(_png(5, 5))
    (folder / "a.txt").write_text("folder alt")
    (folder / "b.png").write_bytes(_png(5, 5))
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps({"u": f"u{i}", "rewrites": [f"r{i}a", f"r{i}b"]})
                                                    for i in range(2)))
    spec = TableSpec.parse(str(tmp_path / "caps.jsonl"), "u=url", ["rewrite=rewrites"])
    units = find_units([str(tmp_path / "part.parquet"), str(tmp_path / "folder")], 100)
    m = build(units, [spec], tmp_path / "out", engine)
    assert m["failed_downloads"]["by_reason"] == {"timeout": 1}
    records = {decode_example(r)["id"]: decode_example(r) for n in m["shards"]
               for r in read_records(str(tmp_path / "out" / n))}
    assert sorted(records) == ["000000000", "000000001", "000000003", "sub/a", "sub/b"]
    assert records["000000001"]["captions"] == {"rewrite_0": "r1a", "rewrite_1": "r1b"}
    assert records["sub/a"]["alt_text"] == "folder alt" and records["sub/b"]["alt_text"] == ""
    assert m["tables"][0]["joined"] == 2 and m["alt_missing"] == 1
    assert m["duplicate_keys"] == {"dropped_within_unit": 1, "across_units": 0} and m["samples_read"] == 6
    assert records["000000001"]["alt_text"] == "alt 1"  # the first row of a repeated key is kept


def test_bad_tables_and_arguments_stop_with_one_line(download, tmp_path):
    root = download["root"]
    dl = str(root / "dl" / "*.tar")
    cases = [
        (["--captions", root / "recap.parquet", "--join", "uid", "--caption", "s=re_caption"], "no join column 'uid'"),
        (["--captions", root / "recap.parquet", "--join", "url", "--caption", "s=recaption"],
         "s=recaption names no column (nearest: 're_caption')"),
        (["--captions", root / "missing.csv", "--join", "url", "--caption", "s=x"], "no such file"),
        (["--captions", root / "recap.parquet", "--caption", "s=re_caption"], "give --join"),
    ]
    for extra, message in cases:
        out = run_cli("--images", dl, "--out", tmp_path / "out", *extra)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "out").exists()  # nothing was written
    out = run_cli("--images", str(root / "nothing*.tar"), "--out", tmp_path / "out")
    assert out.returncode == 2 and "no file matches" in out.stderr
    with pytest.raises(TableError, match="not NAME=COLUMN"):
        TableSpec.parse("t.csv", "url", ["short"])


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, 1001)
    histogram = {str(v): int(c) for v, c in zip(*np.unique(values, return_counts=True))}
    got = percentiles(histogram)
    for p in (5, 50, 95, 99):
        assert got[f"p{p}"] == np.percentile(values, p, method="lower")
    assert got["max"] == values.max() and got["mean"] == pytest.approx(values.mean(), abs=1e-3)


def test_datacompdr_gives_captions_and_teacher_embeddings(download, tmp_path):
    from bigvl.data.ingest.datacompdr import load_datacompdr
    from bigvl.data.teacher import teacher_targets
    from tests.helpers.fake_download import make_datacompdr
    written = make_datacompdr(tmp_path / "dr", download)
    out = run_cli("--images", download["root"] / "dl" / "*.tar", "--out", tmp_path / "out",
                  "--datacompdr", tmp_path / "dr" / "*.tar", "--dr_teacher", 1, "--dr_augmentation", 2)
    assert out.returncode == 0, out.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["tables"][0]["joined"] == len(download["samples"]) and m["coverage"]["syn_4"] == 1.0
    for name in m["shards"]:
        for data in read_records(str(tmp_path / "out" / name)):
            r = decode_example(data)
            want = written[download["samples"][r["id"]]["uid"]]
            assert [r["captions"][f"syn_{k}"] for k in range(5)] == want["syn"]
            got = teacher_targets(r, [want["syn"][3]], "test")

            def unit(v):
                v = v[768:].astype(np.float64)
                return v / np.linalg.norm(v)
            np.testing.assert_allclose(got["teacher_image"], unit(want["image_emb"][2]), atol=1e-3)
            np.testing.assert_allclose(got["teacher_text"], unit(want["text_emb"][4]), atol=1e-3)
            alt = teacher_targets(r, [r["alt_text"]], "test")["teacher_text"]
            np.testing.assert_allclose(alt, unit(want["text_emb"][0]), atol=1e-3)
    (tmp_path / "bad").mkdir()
    with tarfile.open(tmp_path / "bad" / "0.tar", "w") as tar:
        info = tarfile.TarInfo("x.json")
        info.size = 2
        tar.addfile(info, __import__("io").BytesIO(b"{}"))
    with pytest.raises(TableError, match="sample x: missing or malformed member"):
        load_datacompdr([str(tmp_path / "bad" / "*.tar")])


def test_conversion_benchmark_prints_records_per_s(tmp_path, capsys):
    from benchmarks.conversion import main
    main(["--dir", str(tmp_path), "--shards", "2", "--per_shard", "4", "--size", "64", "--max_side", "32"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["max_side"], r["records"]) for r in lines] == [(0, 8), (32, 8)]
    assert all(r["records_per_s_per_core"] > 0 and r["workers"] == 1 for r in lines)


@pytest.mark.parametrize("variant", ["", "b16", "recap", "multi", "alt"])
def test_own_data_config_variants_validate(variant, monkeypatch):
    from bigvl.config import load_config, validate
    monkeypatch.setenv("BIGVL_OWN_DATA", "/data/own")
    c = load_config(f"configs/own_data.py:{variant}")
    validate(c)
    assert c.data.train_paths == ["/data/own/train-*.array_record"] and c.data.tokenizer == "/data/own/tokenizer.model"
    assert c.data.caption_strategy == {"": "mix", "b16": "mix"}.get(variant, variant)


def test_laclip_rewrites_join_by_row(download, tmp_path):
    good = sorted(download["samples"].values(), key=lambda s: s["n"])
    with open(tmp_path / "cc3m_original.csv", "w") as f:
        f.write("url,caption\n" + "".join(f"{s['url']},{s['alt']}\n" for s in good))
    (tmp_path / "cc3m_chatgpt.txt").write_text("".join(f"rewrite of {s['n']}\n" for s in good))
    (tmp_path / "short.txt").write_text("one line\n")
    spec = TableSpec.parse(f"{tmp_path}/cc3m_original.csv+{tmp_path}/cc3m_chatgpt.txt", "url",
                           ["rewrite_0=cc3m_chatgpt"])
    table = load_table(spec)
    assert table.lookup("k", {"url": good[5]["url"]}) == {"rewrite_0": f"rewrite of {good[5]['n']}"}
    with pytest.raises(TableError, match="has 1 lines but"):
        load_table(TableSpec.parse(f"{tmp_path}/cc3m_original.csv+{tmp_path}/short.txt", "url", ["r=short"]))


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_and_tsv_tables_keyed_by_zero_padded_key_join_every_image(download, tmp_path, sep):
    # img2dataset keys are all digits with leading zeros ("000010002"): read as numbers they would lose them
    good = download["samples"]
    table = tmp_path / ("caps.csv" if sep == "," else "caps.tsv")
    table.write_text(f"key{sep}cap\n" + "".join(f"{k}{sep}caption of {k}\n" for k in sorted(good)))
    out = run_cli("--images", download["root"] / "dl" / "*.tar", "--out", tmp_path / "out",
                  "--captions", table, "--join", "key", "--caption", "c=cap")
    assert out.returncode == 0, out.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (m["tables"][0]["joined"], m["tables"][0]["not_joined"]) == (len(good), 0)
    records = [decode_example(r) for n in m["shards"] for r in read_records(str(tmp_path / "out" / n))]
    assert sorted(r["id"] for r in records) == sorted(good)
    assert all(r["captions"] == {"c": f"caption of {r['id']}"} for r in records)
    assert "joined" not in out.stderr


def test_a_table_that_joins_almost_nothing_is_reported_in_one_line(download, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    good = download["samples"]
    (tmp_path / "stripped.csv").write_text("key,cap\n" + "".join(f"{int(k)},c\n" for k in sorted(good)))
    pq.write_table(pa.Table.from_pylist([{"key": int(k), "cap": "c"} for k in sorted(good)]), tmp_path / "int.parquet")
    out = run_cli("--images", download["root"] / "dl" / "*.tar", "--out", tmp_path / "out",
                  "--captions", tmp_path / "stripped.csv", "--join", "key", "--caption", "a=cap",
                  "--captions", tmp_path / "int.parquet", "--join", "key", "--caption", "b=cap")
    assert out.returncode == 0, out.stderr  # a warning, not an error: a small table may cover few images
    lines = [line for line in out.stderr.splitlines() if "joined" in line]
    assert len(lines) == 2, out.stderr
    assert (f"{tmp_path / 'stripped.csv'}: joined 0 of {len(good)} images on key; "
            "table keys look like '0', image keys like '000000000'") in lines[0]
    assert f"{tmp_path / 'int.parquet'}: joined 0 of {len(good)} images on key" in lines[1]
    assert "integer" in lines[1]  # an integer column cannot hold leading zeros: said, not guessed around
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [t["joined"] for t in m["tables"]] == [0, 0]
