"""bigvl/data/ingest/texts.py: the tokenizer's sample is bounded (max_records records drawn at seeded
random positions over all shards, never the whole corpus) and checked by properties, not by its own code."""
from bigvl.data.ingest.beam_io import read_shard, write_shard
from bigvl.data.ingest.texts import sample_texts
from bigvl.data.records import decode_example, encode_example


def test_sample_is_bounded_spread_over_shards_and_seeded(tmp_path):
    paths = []
    for shard in range(3):
        records = [encode_example({"id": f"{shard}-{i}", "image": b"x", "alt_text": f"alt {shard} {i}",
                                   "captions": {"short": f"short {shard} {i}"} if i % 2 else {}}) for i in range(40)]
        paths.append(str(tmp_path / f"train-{shard:05d}-000.array_record"))
        assert write_shard(records, paths[-1]) == 40
    assert [decode_example(r)["id"] for r in read_shard(paths[1])] == [f"1-{i}" for i in range(40)]
    texts, stats = sample_texts(paths, max_records=30, seed=3)
    assert stats["records_in_shards"] == 120 and stats["records_read"] == 30 and stats["faulty"] == 0
    alts = [t for t in texts if t.startswith("alt")]
    assert len(alts) == len(set(alts)) == 30  # 30 distinct records, each read once
    assert {a.split()[1] for a in alts} == {"0", "1", "2"}  # from every shard
    assert stats["texts"] == {"alt": 30, "short": sum(int(a.split()[2]) % 2 for a in alts)}
    assert sample_texts(paths, max_records=30, seed=3)[0] == texts and sample_texts(paths, 30, seed=4)[0] != texts
    everything, stats = sample_texts(paths, max_records=1000, fields=["short"])
    assert stats["records_read"] == 120 and len(everything) == 60 and all(t.startswith("short") for t in everything)
