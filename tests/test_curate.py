"""bigvl.data.curate: MetaCLIP balancing against hand counts, the score filter's kept fraction against the
sketch's error bound, planted duplicates, resume. Beam runs in-process (DirectRunner)."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from bigvl.data.curate.dedup import band_keys, duplicates_to_drop, hamming, image_hashes
from bigvl.data.curate.metaclip import (
    TAIL_SHARE_400M,
    EntryMatcher,
    balanced_keep,
    keep_probabilities,
    kept_probability,
    t_for_tail_share,
)
from bigvl.data.curate.options import CurateOptions
from bigvl.data.curate.pipeline import curate
from bigvl.data.records import decode_example, encode_example, read_records, write_records


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _pixels(i: int) -> np.ndarray:
    """A distinct 64 px image per i: random 16 × 16 blocks, smoothed (perceptual hashes ≥ 20 bits apart)."""
    rng = np.random.default_rng(i)
    small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((64, 64), Image.BILINEAR))


def _record(i, alt="a photo", image=None, score=None):
    extras = {} if score is None else {"clip_score": {"alt": score}}
    return encode_example({"id": f"r{i:05d}", "image": image or b"x", "alt_text": alt, "captions": {}, "extras": extras})


def _write(tmp_path, name, records, shards=2):
    paths = []
    for k, part in enumerate(np.array_split(np.arange(len(records)), shards)):
        path = str(tmp_path / f"{name}-{k}.array_record")
        write_records(path, [records[i] for i in part])
        paths.append(path)
    return paths


def _kept_ids(out_dir, paths):
    return [decode_example(r)["id"] for p in paths for r in read_records(os.path.join(out_dir, os.path.basename(p)))]


TEXTS = ["a red circle", "red circle clipart", "circle", "a blue square", "Blue Square icon", "blue square",
         "blue square", "click here", "RED CIRCLE and blue square"]
ENTRIES = ["red circle", "circle", "blue square"]
HAND_COUNTS = [3, 4, 5]  # 'red circle' in texts 0,1,8; 'circle' in 0,1,2,8; 'blue square' in 3,4,5,6,8


def test_entries_match_whole_words_as_in_metaclip():
    matcher = EntryMatcher(ENTRIES)
    assert matcher("circles and a red circle.") == [0, 1]  # 'circles' is not 'circle'; '.' is wrapped in spaces
    assert matcher("redcircle") == [] and matcher("Red Circle") == [0, 1]
    assert EntryMatcher(ENTRIES, case_sensitive=True)("Red Circle") == []


def test_matching_and_keep_probabilities_match_a_hand_counted_case(tmp_path):
    matcher = EntryMatcher(ENTRIES)
    counts = np.zeros(3, int)
    for text in TEXTS:
        counts[matcher(text)] += 1
    assert counts.tolist() == HAND_COUNTS
    probs = keep_probabilities(counts, t=2)
    np.testing.assert_allclose(probs, [2 / 3, 2 / 4, 2 / 5])
    # text 8 matches all three: kept unless all three draws fail
    assert kept_probability(matcher(TEXTS[8]), probs) == pytest.approx(1 - (1 / 3) * (1 / 2) * (3 / 5))
    # the draws: over many record ids, the kept fraction is the probability (binomial 4-sigma)
    n = 5000
    for entries in ([0], [2], [0, 1, 2]):
        kept = np.mean([balanced_keep(entries, probs, 0, f"id{i}") for i in range(n)])
        p = kept_probability(entries, probs)
        assert abs(kept - p) < 4 * np.sqrt(p * (1 - p) / n)
    # the pipeline's manifest: the same counts by entry name, 'click here' dropped (no entry)
    paths = _write(tmp_path, "bal", [_record(i, alt) for i, alt in enumerate(TEXTS)])
    out = str(tmp_path / "out")
    manifest = curate(paths, out, CurateOptions(entries=tuple(ENTRIES), balance_t=2))
    assert manifest["entry_counts"] == dict(zip(ENTRIES, HAND_COUNTS))
    expected = [f"r{i:05d}" for i, text in enumerate(TEXTS)
                if balanced_keep(matcher(text), probs, 0, f"r{i:05d}")]
    assert _kept_ids(out, paths) == expected
    assert manifest["kept"] == len(expected) and manifest["dropped"]["no_entry"] == 1
    assert sum(manifest["kept_entry_counts"].values()) == sum(len(matcher(TEXTS[int(i[1:])])) for i in expected)


def test_t_for_tail_share_is_the_count_where_the_smallest_entries_hold_that_share():
    counts = [10, 1, 4, 3, 2]  # sorted 1, 2, 3, 4, 10 of 20: cumulative shares .05 .15 .30 .50 1.0
    assert [t_for_tail_share(counts, p) for p in (0.0, 0.15, 0.28, 0.45, 0.9)] == [1, 2, 3, 4, 10]
    assert TAIL_SHARE_400M == pytest.approx(0.32 / 5.67)  # 5.35B of 5.67B matches on the head at t = 20k
    with pytest.raises(ValueError, match="no entry"):
        t_for_tail_share([0, 0], 0.1)


def test_score_filter_keeps_the_top_fraction_within_the_sketch_error(tmp_path):
    n, q = 3000, 0.3
    scores = np.random.default_rng(0).normal(size=n)
    records = [_record(i, score=float(s)) for i, s in enumerate(scores)] + [_record(n)]  # one without a score
    paths = _write(tmp_path, "scored", records, shards=3)
    manifest = curate(paths, str(tmp_path / "out"), CurateOptions(keep_fraction=q))
    # the sketch's rank error is below N / 1000 (ApproximateQuantiles with 1001 quantiles), + 1 for rounding
    assert abs(manifest["kept"] - q * n) <= n / 1000 + 1
    kept = {int(i[1:]) for i in _kept_ids(str(tmp_path / "out"), paths)}
    assert kept == {i for i in range(n) if scores[i] >= manifest["score_threshold"]}
    assert manifest["dropped"]["no_score"] == 1


def test_planted_duplicates_are_all_found_and_one_per_cluster_is_kept(tmp_path):
    distinct = [_jpeg(_pixels(i)) for i in range(30)]
    exact = {30: 3, 31: 3, 32: 7}  # copies of images 3, 3, 7 (same bytes)
    near = {33: 5, 34: 11, 35: 12}  # re-encoded at another quality and slightly brightened
    images = distinct + [distinct[j] for j in exact.values()]
    images += [_jpeg(np.clip(_pixels(j).astype(int) + 6, 0, 255).astype(np.uint8), quality=70) for j in near.values()]
    for i, j in near.items():
        assert images[i] != images[j] and hamming(image_hashes(images[i])[1], image_hashes(images[j])[1]) <= 4
    leaked = [20, 21]  # the evaluation split holds near copies of these two
    eval_paths = _write(tmp_path, "eval", [_record(100 + k, image=_jpeg(_pixels(j), quality=80))
                                           for k, j in enumerate(leaked)], shards=1)
    paths = _write(tmp_path, "dup", [_record(i, image=im) for i, im in enumerate(images)], shards=3)
    out = str(tmp_path / "out")
    manifest = curate(paths, out, CurateOptions(dedup="near"), against=eval_paths)
    kept = {int(i[1:]) for i in _kept_ids(out, paths)}
    assert kept == set(range(30)) - set(leaked)  # the first of each cluster, none leaking into evaluation
    assert manifest["dropped"] == {"duplicate": 8}
    exact_only = curate(paths, str(tmp_path / "exact"), CurateOptions(dedup="exact"))
    assert exact_only["dropped"] == {"duplicate": 3}


def test_band_keys_find_every_pair_within_the_distance():
    rng = np.random.default_rng(1)
    for d in (0, 3, 7):
        for _ in range(200):
            a = int(rng.integers(0, 2 ** 63)) * 2 + int(rng.integers(0, 2))
            b = a
            for bit in rng.choice(64, size=int(rng.integers(0, d + 1)), replace=False):
                b ^= 1 << int(bit)
            assert set(band_keys(a, d)) & set(band_keys(b, d))


def test_clusters_keep_their_smallest_key_and_drop_training_keys_near_evaluation():
    edges = [((1, 0, 5), (1, 0, 2)), ((1, 0, 2), (1, 1, 0)), ((1, 1, 3), (0, 0, 0)), ((1, 1, 4), (1, 1, 9))]
    drop = duplicates_to_drop(edges, is_eval=lambda k: k[0] == 0)
    assert drop == {(1, 0, 5), (1, 1, 0), (1, 1, 3), (1, 1, 9)}


@pytest.mark.slow  # three Beam pipelines
def test_a_killed_run_restarted_writes_the_same_shards_and_faults_are_counted(tmp_path):
    records = [_record(i, alt, score=float(i % 7)) for i, alt in enumerate(TEXTS * 3)] + [b"not msgpack"]
    paths = _write(tmp_path, "res", records, shards=3)
    options = CurateOptions(entries=tuple(ENTRIES), balance_t=3, keep_fraction=0.6, seed=5)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    first = curate(paths, a, options)
    assert first["faulty"] == 1 and first["dropped"]["fault"] == 1
    curate(paths, b, options)
    os.remove(os.path.join(b, os.path.basename(paths[1])))  # killed before this shard was renamed into place
    again = curate(paths, b, options)
    assert [s["written"] for s in again["shards"]] == [False, True, False]
    for p in paths:
        name = os.path.basename(p)
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
    assert json.load(open(os.path.join(b, "manifest.json")))["kept"] == first["kept"]


@pytest.mark.slow  # a Beam pipeline and a GCS emulator
def test_a_gs_output_holds_the_state_manifest_and_shards_of_a_local_run(tmp_path, monkeypatch):
    from bigvl.data.ingest import beam_io
    from tests.helpers.gcs_emulator import GcsEmulator
    records = [_record(i, alt, score=float(i % 7)) for i, alt in enumerate(TEXTS * 3)]
    paths = _write(tmp_path, "gs", records, shards=2)
    options = CurateOptions(entries=tuple(ENTRIES), balance_t=3, keep_fraction=0.6, seed=5)
    local = curate(paths, str(tmp_path / "local"), options)
    with GcsEmulator() as gcs:
        for name, value in gcs.env.items():
            monkeypatch.setenv(name, value)
        out = f"gs://{gcs.bucket}/curated"
        remote = curate(paths, out, options)
        stored = beam_io.read_json(f"{out}/manifest.json")
        shards = {os.path.basename(p): b"".join(beam_io.read_shard(f"{out}/{os.path.basename(p)}")) for p in paths}
        assert beam_io.exists(f"{out}/.curate/counts.json") and not beam_io.match(f"{out}/*.tmp")
    assert not os.path.exists("gs:")  # nothing written under a local directory named after the URL
    assert remote["kept"] == stored["kept"] == local["kept"] and remote["entry_counts"] == local["entry_counts"] != {}
    assert shards == {n: b"".join(read_records(str(tmp_path / "local" / n))) for n in shards}


def test_the_command_curates_and_a_restart_with_other_options_stops_in_one_line(tmp_path, capsys):
    from bigvl.cli.curate import main
    metadata = tmp_path / "entries.txt"
    metadata.write_text("# a comment\n" + "\n".join(ENTRIES) + "\n")
    paths = _write(tmp_path, "cli", [_record(i, alt) for i, alt in enumerate(TEXTS)])
    out = str(tmp_path / "out")
    assert main(["--in", str(tmp_path / "cli-*.array_record"), "--out", out, "--metadata", str(metadata),
                 "--balance_t", "100"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kept"] == len(TEXTS) - 1  # all but 'click here'
    assert main(["--in", *paths, "--out", out, "--metadata", str(metadata), "--balance_t", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "balance_t 100.0 → 2.0" in err[0]
