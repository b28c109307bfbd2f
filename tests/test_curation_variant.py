"""The curation world variant (bigvl/data/world/curation_variant.py): a long tail, spam, near-duplicates
that `bigvl curate --dedup near` finds."""
from __future__ import annotations

import collections
import json
import os

import pytest

from bigvl.data.curate.metaclip import EntryMatcher
from bigvl.data.curate.options import CurateOptions
from bigvl.data.curate.pipeline import curate
from bigvl.data.pipeline import resolve_paths
from bigvl.data.records import decode_example, read_records
from bigvl.data.world.curation_variant import SPAM_WORDS, build_curation_world
from bigvl.data.world.examples import class_names


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


def test_the_tail_rules_and_head_spam_against_the_base_world(tiny_world, tmp_path):
    base = [decode_example(r) for p in resolve_paths([str(tiny_world / "train-*.array_record")]) for r in read_records(p)]
    classes = [[f"{o['colour']} {o['shape']}" for o in r["extras"]["scene"]["objects"]] for r in base]
    kept = {}
    for tail in ("all_objects", "first_object"):  # alpha huge: only the rank-0 class survives (p = 1 vs <= 2^-60)
        out = build_curation_world(tiny_world, tmp_path / tail, alpha=60, p_spam=1.0, p_duplicate=0.0, head=3,
                                   num_shards=1, tail=tail)
        info = json.loads((out / "variant.json").read_text())
        kept[tail] = [decode_example(r) for r in read_records(str(out / "train-00000-of-00001.array_record"))]
        top = min(info["class_rank"], key=info["class_rank"].get)
    assert len(kept["all_objects"]) == sum(all(c == top for c in cs) for cs in classes)
    assert len(kept["first_object"]) == sum(cs[0] == top for cs in classes) > len(kept["all_objects"]) > 0
    head = {c for c, r in info["class_rank"].items() if r < 3}
    matcher = EntryMatcher(class_names())
    for record in kept["first_object"]:  # p_spam 1: every text is spam naming no class or one head class
        named = {class_names()[e] for e in matcher(record["alt_text"])}
        assert record["alt_text"].startswith(SPAM_WORDS) and len(named) <= 1 and named <= head
