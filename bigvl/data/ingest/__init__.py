"""Bringing downloaded, recaptioned data into bigvl records (used by data/build_shards.py).

- `inputs`: img2dataset webdataset tars, img2dataset parquet, folders of images → samples.
- `tables`: caption tables (parquet, JSONL, CSV/TSV) joined to samples by key, url or uid.
- `convert`: one input unit → ArrayRecord shard(s) + a stats file; all units in parallel,
  deterministic and resumable.
- `manifest`: the stats of all units merged into DIR/manifest.json.
- `datacompdr`: MobileCLIP's DataCompDR tars as a table (synthetic captions + teacher embeddings).
- `texts`: the texts of converted shards, sampled for training a tokenizer (data/train_tokenizer.py).
"""
