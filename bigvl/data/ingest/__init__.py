"""Bringing downloaded, recaptioned data into bigvl records (used by data/build_shards.py).

- `inputs`: img2dataset webdataset tars, img2dataset parquet, folders of images → samples.
- `tables`: caption tables (parquet, JSONL, CSV/TSV) joined to samples by key, url or uid.
- `pipeline`: the conversion as one Apache Beam pipeline (the command's path; `bigvl[beam]`):
  tables streamed (`table_rows`) and joined by key, each unit written by `convert.convert_unit`.
- `beam_io`: files on any Beam filesystem (gs:// ...), temp-name-then-rename shards, runner options.
- `convert`: one input unit → ArrayRecord shard(s) + a stats file (shared by the pipeline); and
  `convert_all`, the former single-host process pool (tables in memory), kept as the reference.
- `manifest`: the stats of all units merged into DIR/manifest.json.
- `datacompdr`: MobileCLIP's DataCompDR tars as a table (synthetic captions + teacher embeddings).
- `texts`: the texts of converted shards, sampled for training a tokenizer (data/train_tokenizer.py).
"""
