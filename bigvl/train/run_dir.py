"""Moved: the run directory's pieces each have their own module. Kept only while importers move
(deleted once none is left): `workdir_checks` (check_workdir), `metrics_log` (MetricsWriter,
read_metrics, finished_metrics), `example_ids` (ids_path, ExampleIdsLog, read_ids), `supersede`
(supersede_after, supersede_logs, superseded_path)."""
from __future__ import annotations

from bigvl.train.example_ids import IDS_DIR, ExampleIdsLog, ids_path, read_ids  # noqa: F401
from bigvl.train.metrics_log import MetricsWriter, finished_metrics, format_line, read_metrics  # noqa: F401
from bigvl.train.supersede import supersede_after, supersede_logs, superseded_path  # noqa: F401
from bigvl.train.workdir_checks import check_workdir  # noqa: F401
