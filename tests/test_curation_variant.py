"""The curation world variant (bigvl/data/world/curation_variant.py): a long tail, spam, near-duplicates
that `bigvl curate --dedup near` finds."""
from __future__ import annotations

import collections
import json
import os

import pytest

from bigvl.data.curate.options import CurateOptions
from bigvl.data.curate.pipeline import curate
from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.data.world.curation_variant import build_curation_world


@pytest.mark.slow  # builds the variant and runs a Beam pipeline: ~10-20 s
def test_the_variant_has_a_long_tail_spam_and_duplicates_that_dedup_finds(tiny_world, tmp_path):
    out = build_curation_world(tiny_world, tmp_path / "variant", alpha=1.5, p_spam=0.5, p_duplicate=0.5, head=30,
                               num_shards=2)
    info = json.loads((out / "variant.json").read_text())
    counts = sorted(info["per_class"].values(), reverse=True)
    assert sum(counts[:3]) > sum(counts[3:])  # a few classes hold most images
    paths = resolve_paths([str(out / "train-*.array_record")])
    records = [decode_example(r) for p in paths for r in read_records(p)]
    assert len(records) == info["records"] == sum(counts) + len(info["near_duplicates"]) > 0
    assert info["spam"] > 0 and info["near_duplicates"]
    assert os.path.exists(out / "zeroshot.array_record") and os.path.exists(out / "tokenizer.model")
    curate(paths, str(tmp_path / "dedup"), CurateOptions(dedup="near"))
    kept = [decode_example(r)["id"] for p in paths for r in read_records(str(tmp_path / "dedup" / os.path.basename(p)))]
    survivors = collections.Counter(i.split("/dup")[0] for i in kept)
    planted = {i.split("/dup")[0] for i in info["near_duplicates"]}
    assert all(survivors[i] == 1 for i in planted)  # each planted group keeps exactly one image
