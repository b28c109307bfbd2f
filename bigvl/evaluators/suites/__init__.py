"""The benchmarks papers report, read from the files users have: `run_suites(encoder, names, data_dir)`.

    python -m bigvl.evaluate --workdir RUN --suite wds/imagenet1k,karpathy/coco --data_dir /data

Layout readers (one per format): `clip_benchmark_wds`, `tfds_suites`, `image_folder`, `karpathy`,
`long_captions` (Urban1k, DOCCI, DCI), `compositional` (SugarCrepe, ARO). The suite table
(`table.SUITES`) names each suite; `protocols` runs zero-shot, retrieval and true/false pairs;
`results` writes CLIP_benchmark's result JSON. Class names and templates are data files in
`classnames/`.
"""
from bigvl.evaluators.suites.results import run_suites, write_result
from bigvl.evaluators.suites.table import SUITES, load_suite, parse_suites, unknown_suite

__all__ = ["SUITES", "load_suite", "parse_suites", "run_suites", "unknown_suite", "write_result"]
