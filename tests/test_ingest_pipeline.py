"""build_shards on Apache Beam (bigvl/data/ingest/pipeline.py, table_rows.py, beam_io.py).

- The shards of a fixture (img2dataset tars + a Recap-DataComp parquet + a DreamLIP CSV +
  DataCompDR) equal, byte for byte, the SHA-256s the process pool wrote before the change
  (commit 2160b22, Pillow 12.3.0) and the pool's output on the same inputs now.
- Two worker processes (multi_processing) and a resume give the same bytes (slow).
- The Dataflow command in docs/guides/own_data.md builds checked PipelineOptions (no submission);
  missing options, local paths, Prism and unknown flags are one-line errors.
- Table parts read row by row equal pyarrow's whole-table read; the join filter has no false negatives.
- gs:// inputs, table and output on a local GCS emulator (gcp-storage-emulator) give the pool's records (slow).
- A malformed DataCompDR sample is skipped and counted in the manifest with its file and sample (slow).
- benchmarks/ingest_memory.py and ingest_throughput.py run at toy size and print their lines (slow).
"""
import hashlib
import json
import os
import re
import shlex

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from bigvl.data.ingest.beam_io import RunnerError, check_runner, pipeline_options  # noqa: E402
from bigvl.data.ingest.convert import ConvertOptions, convert_all  # noqa: E402
from bigvl.data.ingest.datacompdr import load_datacompdr  # noqa: E402
from bigvl.data.ingest.inputs import find_units  # noqa: E402
from bigvl.data.ingest.tables import TableSpec, load_table  # noqa: E402
from bigvl.data.records import read_records  # noqa: E402
from tests.helpers.fake_download import make_datacompdr, make_download, make_dreamlip_csv, make_recap_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Written by the pool (convert_all, workers=1) at commit 2160b22 before the Beam pipeline existed.
GOLDEN_INPUTS = {"00000.tar": "baad6fe6fc67083acb3fe2367aa37ea687add0059372d31add3796e90b3691b6",
                 "00001.tar": "74d58384f7756e79dfda0945692040b1ddbd4b98435bd32f02a1ff10936fd1c5",
                 "00002.tar": "08b48312e685d46926e120b7a9205a1185874f8c1447bac3dce14606fb8c53bf"}
GOLDEN = {
    "keep": {"train-00000-000.array_record": "15cfdcf6328929e38f3acc8f7caaf3baba4458c83b09e3054303edcf0e5f6da7",
             "train-00001-000.array_record": "16fd551f5c51eaf34012870dd47145a684e1fe09c77b7c6d3ae908204d9f8bad",
             "train-00002-000.array_record": "9c9f1e6132e8abeef568d050a4bb9b5ae0ffad93bb9f2a92d8f664f17d491e58"},
    "resize": {"train-00000-000.array_record": "d03a8f02c389d4114f8bcf3849fd7087d0a1500ff51b98d3025ecbb52690a124",
               "train-00000-001.array_record": "7753d28269c77035307fec009c0f756ffc23bd8142428d9d39b7bca1c2d58ce1",
               "train-00000-002.array_record": "14848fcd7980910948aa4035f10ea8756c22edc5c80f434d45fcace30c7d2182",
               "train-00001-000.array_record": "b654f8add8b10dba1955877ab76b280a71341248a2e344d0842bf40e533d77a3",
               "train-00001-001.array_record": "46242ee5b972f92b49b85b7c7ab208fe8d5e68cb137918eb5fe3b07a81ab654e",
               "train-00001-002.array_record": "b8361169aefa7e2b89a99876308822311ecac6a31a842caa468c50fe8f0c0b60",
               "train-00002-000.array_record": "708104367e135f2e4e977dd8a937e9377bc36ac6fa2aa3ab60dd7d2e7227585e",
               "train-00002-001.array_record": "198c4315d1e234f610fd0e67e55ee327ddaeb8df19946588879782b43019279f",
               "train-00002-002.array_record": "2eaa0d5d769aab97311a97c6681e17eac2864742f800ac0e7ee7af054ce0c44c"}}
SETTINGS = {"keep": {}, "resize": {"max_side": 20, "shard_size": 4}}


def sha256s(out):
    return {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in sorted(os.listdir(out))
            if n.endswith(".array_record")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    planted = make_download(root / "dl", shards=3, per_shard=10)
    make_recap_table(root / "recap.parquet", planted)
    make_dreamlip_csv(root / "dreamlip.csv", planted)
    make_datacompdr(root / "dr", planted)
    return root


def specs(root):
    return [TableSpec.parse(str(root / "recap.parquet"), "url", ["short=re_caption", "org=org_caption"]),
            TableSpec.parse(str(root / "dreamlip.csv"), "Image Path=url", ["long=longSV_captions"])]


def beam_build(root, out, setting, workers=1):
    from bigvl.data.ingest.pipeline import DataCompDRSource, plan_build, run_build
    options = ConvertOptions(out=str(out), **SETTINGS[setting])
    units = find_units([str(root / "dl" / "*.tar")], options.shard_size)
    dr = DataCompDRSource(tuple(sorted(str(p) for p in (root / "dr").glob("*.tar"))), 1, 2)
    plan = plan_build(units, specs(root), dr, options, log=lambda m: None)
    return run_build(plan, pipeline_options([], workers), log=lambda m: None)


def pool_build(root, out, setting):
    options = ConvertOptions(out=str(out), **SETTINGS[setting])
    tables = [load_table(s) for s in specs(root)] + [load_datacompdr([str(root / "dr" / "*.tar")], 1, 2)]
    return convert_all(find_units([str(root / "dl" / "*.tar")], options.shard_size), tables, options,
                       log=lambda m: None)


def sha256s_tars(root):
    return {n: hashlib.sha256((root / "dl" / n).read_bytes()).hexdigest() for n in sorted(os.listdir(root / "dl"))
            if n.endswith(".tar")}


def test_beam_writes_the_pools_bytes_and_manifest(inputs, tmp_path):
    m = beam_build(inputs, tmp_path / "beam", "keep")
    pool = pool_build(inputs, tmp_path / "pool", "keep")
    got = sha256s(tmp_path / "beam")
    assert got == sha256s(tmp_path / "pool")
    for key in ("samples_read", "written", "failed_downloads", "bad", "duplicate_keys", "coverage", "caption_lengths",
                "shards", "units"):
        assert m[key] == pool[key], key
    assert [(t["rows"], t["joined"], t["not_joined"]) for t in m["tables"]] == \
        [(t["rows"], t["joined"], t["not_joined"]) for t in pool["tables"]]
    if sha256s_tars(inputs) == GOLDEN_INPUTS:
        assert got == GOLDEN["keep"]
    on_disk = json.loads((tmp_path / "beam" / "manifest.json").read_text())
    assert on_disk["runner"] == "DirectRunner" and on_disk["written"] == pool["written"] == 28


@pytest.mark.slow
def test_two_worker_processes_resize_and_resume_give_the_recorded_bytes(inputs, tmp_path):
    out = tmp_path / "beam"
    m = beam_build(inputs, out, "resize", workers=2)
    assert m["workers"] == 2 and len(m["shards"]) == 9
    pool_build(inputs, tmp_path / "pool", "resize")
    want = sha256s(tmp_path / "pool")
    if sha256s_tars(inputs) == GOLDEN_INPUTS:
        assert want == GOLDEN["resize"]
    assert sha256s(out) == want
    # a run killed during unit 1: its stats file missing and a temporary left; the rerun redoes unit 1 only
    os.remove(out / ".stats" / "00001.json")
    os.rename(out / "train-00001-000.array_record", out / "train-00001-000.array_record.1234.tmp")
    before = os.stat(out / "train-00000-000.array_record").st_mtime_ns
    m = beam_build(inputs, out, "resize", workers=1)
    assert m["resumed_units"] == 2 and m["written"] == 28 and sha256s(out) == want
    assert os.stat(out / "train-00000-000.array_record").st_mtime_ns == before
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def documented_command():
    text = open(os.path.join(REPO, "docs", "guides", "own_data.md")).read()
    block = re.search(r"<!-- dataflow-example -->\s*```bash\n(.*?)```", text, re.S).group(1)
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:2] == ["python", "data/build_shards.py"]
    return argv[2:]


def test_the_documented_dataflow_command_builds_checked_options():
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions

    from bigvl.cli.build_shards import parse_args
    args = parse_args(documented_command())
    options = pipeline_options(args.beam_args, args.workers)
    check_runner(options, args.out, [*args.images, *(t["path"] for t in args.tables)])
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("my-project", "us-central1", "gs://my-bucket/beam-tmp")
    assert options.view_as(SetupOptions).setup_file == "./pyproject.toml"
    assert options.view_as(WorkerOptions).max_num_workers == 200
    assert options.view_as(WorkerOptions).machine_type == "n2-standard-8"
    assert args.max_side == 512 and [t["join"] for t in args.tables] == ["url"]
    cases = [("--region", [], "needs --region"), ("--setup_file", [], "workers need bigvl"),
             ("--temp_location", ["--temp_location", "/tmp/x"], "needs a gs:// path")]
    for drop, add, message in cases:
        argv = documented_command()
        i = argv.index(drop)
        args = parse_args(argv[:i] + argv[i + 2:] + add)
        with pytest.raises(RunnerError, match=re.escape(message)):
            check_runner(pipeline_options(args.beam_args, 1), args.out, args.images)
    args = parse_args(documented_command())
    with pytest.raises(RunnerError, match="is a local path"):
        check_runner(pipeline_options(args.beam_args, 1), "/local/out", args.images)
    with pytest.raises(RunnerError, match="downloads a binary"):
        check_runner(pipeline_options(["--runner", "PrismRunner"], 1), "gs://b/o", [])
    with pytest.raises(RunnerError, match=r"unknown option\(s\) \['--projekt'\]"):
        pipeline_options(["--projekt", "my-project"], 1)
    from bigvl.data.ingest.beam_io import beam_runner
    assert beam_runner(options) is None  # Dataflow: Beam resolves --runner
    assert type(beam_runner(pipeline_options([], 3))).__name__ == "FnApiRunner"  # locally never Prism (a download)
    local = pipeline_options([], 3).get_all_options()
    assert (local["runner"], local["direct_num_workers"], local["direct_running_mode"]) == \
        ("DirectRunner", 3, "multi_processing")


def test_table_parts_stream_the_rows_pyarrow_reads_whole(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bigvl.data.ingest.table_rows import iter_part, plan_table
    rows = [{"url": None if i % 7 == 3 else f"u{i % 50}", "cap": [f"a{i}", ""] if i % 2 else f"c{i}"} for i in range(120)]
    rows = [dict(r, cap=r["cap"] if isinstance(r["cap"], str) else None) for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=25)
    spec = TableSpec.parse(str(tmp_path / "t.parquet"), "url", ["c=cap"])
    parts, key_type = plan_table(0, spec)
    assert len(parts) == 5 and key_type == "string"
    got = [r for part in parts for r in iter_part(spec, part)]
    assert [g[0] for g in got] == list(range(120))
    want = pq.read_table(tmp_path / "t.parquet").to_pylist()
    for (row, value, captions), w in zip(got, want):
        assert value == w["url"] and captions == ({"c": w["cap"]} if w["cap"] else {})
    table = load_table(spec)  # the first row of a repeated value wins, as the pipeline's min(row) picks
    firsts = {}
    for row, value, captions in got:
        if value is not None:
            firsts.setdefault(value, captions)
    assert table.index == firsts


def test_the_join_filter_has_no_false_negatives():
    from bigvl.data.ingest.join_filter import FilterFn, passes
    fn = FilterFn(2 ** 16)
    acc = fn.create_accumulator()
    values = [f"http://example.com/{i}" for i in range(2000)]
    for v in values[:1000]:
        acc = fn.add_input(acc, (1, v))
    bits = fn.merge_accumulators([acc, fn.create_accumulator()])
    assert all(passes(bits, 1, v) for v in values[:1000])
    false_positives = np.mean([passes(bits, 1, v) for v in values[1000:]] + [passes(bits, 0, v) for v in values[:1000]])
    assert false_positives < 0.01  # 64 bits per value, 3 hashes: ~0.1 %


@pytest.mark.slow
def test_gs_inputs_and_output_through_beams_filesystems_on_a_gcs_emulator(tmp_path, monkeypatch):
    from bigvl.data.ingest import beam_io
    from bigvl.data.ingest.pipeline import plan_build, run_build
    from tests.helpers.gcs_emulator import GcsEmulator
    planted = make_download(tmp_path / "dl", shards=2, per_shard=6)
    make_recap_table(tmp_path / "recap.parquet", planted)
    spec = ["url", ["short=re_caption"]]
    pool = convert_all(find_units([str(tmp_path / "dl" / "*.tar")], 10000),
                       [load_table(TableSpec.parse(str(tmp_path / "recap.parquet"), *spec))],
                       ConvertOptions(out=str(tmp_path / "pool")), log=lambda m: None)
    with GcsEmulator() as gcs:
        for name, value in gcs.env.items():
            monkeypatch.setenv(name, value)
        for path in sorted((tmp_path / "dl").iterdir()):  # tars and their img2dataset parquet sidecars
            beam_io.publish(str(path), f"gs://{gcs.bucket}/in/dl/{path.name}")
        beam_io.publish(str(tmp_path / "recap.parquet"), f"gs://{gcs.bucket}/in/recap.parquet")
        units = find_units([f"gs://{gcs.bucket}/in/dl/*.tar"], 10000)
        plan = plan_build(units, [TableSpec.parse(f"gs://{gcs.bucket}/in/recap.parquet", *spec)], None,
                          ConvertOptions(out=f"gs://{gcs.bucket}/out"), log=lambda m: None)
        m = run_build(plan, pipeline_options([], 1), log=lambda m: None)
        remote = {p.rsplit("/", 1)[1]: hashlib.sha256(b"".join(beam_io.read_shard(p))).hexdigest()
                  for p in beam_io.match(f"gs://{gcs.bucket}/out/*.array_record")}
        assert beam_io.read_json(f"gs://{gcs.bucket}/out/manifest.json")["written"] == m["written"]
        assert not beam_io.match(f"gs://{gcs.bucket}/out/*.tmp")
    local = {n: hashlib.sha256(b"".join(read_records(str(tmp_path / "pool" / n)))).hexdigest() for n in pool["shards"]}
    assert remote == local and len(local) == 2
    assert (m["written"], m["failed_downloads"], m["tables"][0]["joined"]) == \
        (pool["written"], pool["failed_downloads"], pool["tables"][0]["joined"])


@pytest.mark.slow
def test_a_malformed_datacompdr_sample_is_skipped_and_counted(tmp_path):
    import io
    import tarfile

    from bigvl.data.ingest.pipeline import DataCompDRSource, plan_build, run_build
    planted = make_download(tmp_path / "dl", shards=1, per_shard=6, corrupt=(), failed=())
    make_datacompdr(tmp_path / "dr", planted, per_tar=8)
    with tarfile.open(tmp_path / "dr" / "00000001.tar", "w") as tar:  # a second tar: one sample without syn.json
        payload = json.dumps({"uid": planted["samples"]["000000002"]["uid"]}).encode()
        info = tarfile.TarInfo("999.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    dr = DataCompDRSource(tuple(sorted(str(p) for p in (tmp_path / "dr").glob("*.tar"))))
    plan = plan_build(find_units([str(tmp_path / "dl" / "*.tar")], 100), [], dr, ConvertOptions(out=str(tmp_path / "out")),
                      log=lambda m: None)
    table = run_build(plan, pipeline_options([], 1), log=lambda m: None)["tables"][0]
    assert (table["rows"], table["joined"], table["malformed_rows"]) == (7, 6, 1)
    assert "00000001.tar: sample 999: missing or malformed member" in table["malformed_example"]


@pytest.mark.slow
def test_ingest_benchmarks_print_one_line_per_setting(tmp_path, capsys):
    from benchmarks.ingest_memory import main as memory
    from benchmarks.ingest_throughput import main as throughput
    memory(["--dir", str(tmp_path / "m"), "--rows", "60,90", "--images", "40", "--per_shard", "20", "--workers", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["mode"], r["table_rows"]) for r in rows] == [("pool", 60), ("beam", 60), ("pool", 90), ("beam", 90)]
    assert all(r["written"] == r["joined"] == 40 and r["same_bytes"] and r["main_peak_mb"] > 0 for r in rows)
    throughput(["--dir", str(tmp_path / "t"), "--shards", "2", "--per_shard", "4", "--size", "64", "--max_side", "32",
                "--workers", "1", "--modes", "pool,beam,beam_empty"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["mode"], r["records"]) for r in rows] == [("pool", 8), ("beam", 8), ("beam_empty", 0)]
    assert rows[1]["same_bytes_as_pool"] is True
