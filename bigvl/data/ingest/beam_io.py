"""Files and runners for bigvl's Apache Beam pipelines (build_shards; reusable by curation).

    paths = match(["gs://bucket/dl/*.tar"])              # local globs or any Beam filesystem
    with local_copy(path) as local: ...                    # a remote file fetched to a temp file
    write_shard(records, "gs://bucket/out/train-00000-000.array_record")  # temp name, then renamed
    records = read_shard(path)                             # [bytes] in file order
    options = pipeline_options(beam_args, workers=4)       # DirectRunner, one process per worker
    beam.Pipeline(runner=beam_runner(options), options=options)  # never Prism (a download)
    check_runner(options, out="gs://...", inputs=[...])    # one line before submission, no network

Local paths use the os module; anything with a scheme (``gs://``, ``s3://``, ``hdfs://``) goes
through Beam's own filesystems (``apache_beam.io.filesystems.FileSystems``), so a pipeline reads
and writes Cloud Storage on any runner. A file is published under a temporary name
(``NAME.<random>.tmp``) and renamed when complete, so a reader never sees half a file and a
retried or duplicated bundle rewrites the same bytes under the same name (idempotent).

Runners: without ``--runner`` the pipeline runs on Beam's in-process runner (the FnApiRunner the
DirectRunner uses for batch pipelines), one process per worker (``direct_running_mode=
multi_processing``, ``direct_num_workers``; in_memory for one worker), which needs no download
and no service. Beam 2.77's DirectRunner tries Prism first, which fetches a binary at run time
(offline: a failed download, then a fallback): `beam_runner` names the FnApiRunner directly.
`check_runner` validates the options of Dataflow, Flink and Spark runs without contacting any
service (Beam's own validator reaches Cloud Storage).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
import uuid
from typing import Any, Iterable, Iterator, Sequence

REMOTE_RUNNERS = ("DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
LOCAL_RUNNERS = ("DirectRunner",)


class RunnerError(ValueError):
    """Pipeline options that cannot run (unknown flag, missing project/region/...); one line."""


def is_remote(path: str) -> bool:
    """Whether `path` names a Beam filesystem other than the local one (gs://, s3://, hdfs:// ...)."""
    return "://" in path and not path.startswith("file://")


def join(base: str, *names: str) -> str:
    """`base`/`names` for local and remote paths alike."""
    return os.path.join(base, *names) if not is_remote(base) else "/".join([base.rstrip("/"), *names])


def match(pattern: str) -> list[str]:
    """The files (and, locally, folders) a glob matches, sorted; [] when none."""
    if not is_remote(pattern):
        return sorted(glob.glob(os.path.expanduser(pattern)))
    from apache_beam.io.filesystems import FileSystems
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 (BeamIOError when nothing matches)
        return []
    return sorted(m.path for m in found)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems
    return FileSystems.exists(path)


def makedirs(path: str) -> None:
    """Creates a local directory (a remote prefix needs none)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str = "rb"):
    """A binary file object of `path` ("rb" or "wb"); remote reads are seekable."""
    if not is_remote(path):
        return open(path, mode)
    from apache_beam.io.filesystems import CompressionTypes, FileSystems
    if mode == "rb":
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def rename(source: str, dest: str) -> None:
    """Moves `source` onto `dest` (replacing it)."""
    if not is_remote(dest):
        os.replace(source, dest)
        return
    from apache_beam.io.filesystems import FileSystems
    if FileSystems.exists(dest):
        FileSystems.delete([dest])
    FileSystems.rename([source], [dest])


def publish(local_path: str, dest: str) -> None:
    """Puts the finished local file `local_path` at `dest` under a temporary name, then renames it."""
    tmp = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
    if is_remote(dest):
        with open(local_path, "rb") as src, open_file(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
    else:
        shutil.copyfile(local_path, tmp)
    rename(tmp, dest)


def remove_temporaries(directory: str) -> int:
    """Deletes the ``*.tmp`` files a killed run left in `directory`; returns how many."""
    found = match(join(directory, "*.tmp"))
    if not is_remote(directory):
        for path in found:
            os.remove(path)
    elif found:
        from apache_beam.io.filesystems import FileSystems
        FileSystems.delete(found)
    return len(found)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path holding `path`'s bytes: the path itself when local, else a temp copy deleted on exit."""
    if not is_remote(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bigvl_beam_") as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        with open_file(path) as src, open(local, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
        yield local


def write_json(path: str, value: Any) -> None:
    """Writes `value` as JSON at `path` under a temporary name, then renames it."""
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open_file(tmp, "wb") as f:
        f.write(json.dumps(value).encode())
    rename(tmp, path)


def read_json(path: str) -> Any:
    with open_file(path) as f:
        return json.loads(f.read())


def write_shard(records: Iterable[bytes], path: str) -> int:
    """Writes `records` (encoded examples, in order) as one ArrayRecord file (group_size:1, grain's
    random access) at `path`, under a temporary name renamed when complete; returns the count."""
    from bigvl.data.records import write_records
    with tempfile.TemporaryDirectory(prefix="bigvl_shard_") as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        count = write_records(local, records)
        publish(local, path)
    return count


def read_shard(path: str) -> list[bytes]:
    """The records of one ArrayRecord file, in order (a remote file is fetched first)."""
    from bigvl.data.records import read_records
    with local_copy(path) as local:
        return read_records(local)


# ---------------------------------------------------------------- runners


def quiet_beam_logs() -> None:
    """Beam's loggers at WARNING, and without the line Beam logs on import when its GCP extra (apitools)
    is absent (local runs do not need it); for a command, before it imports Beam."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger().addFilter(lambda record: "apitools not found" not in record.getMessage())


def pipeline_options(beam_args: Sequence[str], workers: int):
    """Beam PipelineOptions from the command's leftover flags (``--runner ...``, ``--project ...``).

    Without --runner: the DirectRunner with `workers` processes (in_memory for one). Raises
    RunnerError naming a flag Beam does not know (a typo would otherwise be dropped silently).
    """
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
    options = PipelineOptions(list(beam_args))
    known = set(options.get_all_options(drop_default=False))
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - known)
    if unknown:
        raise RunnerError(f"unknown option(s) {['--' + u for u in unknown]}: neither build_shards' nor Beam's "
                          "(python data/build_shards.py --help; Beam: apache_beam.options.pipeline_options)")
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
    if standard.runner in LOCAL_RUNNERS:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    return options


def runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__


def beam_runner(options):
    """The runner to give ``beam.Pipeline(runner=...)``: for the DirectRunner, the in-process FnApiRunner
    it picks for a batch pipeline, named directly (the DirectRunner first tries Prism, which downloads a
    binary at run time: offline it fails and falls back, online it would run Prism). None otherwise:
    Beam resolves --runner itself."""
    if runner_name(options) not in LOCAL_RUNNERS:
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner()


def check_runner(options, out: str, inputs: Sequence[str]) -> None:
    """Raises RunnerError (one line) when the options cannot run where they point, before submission.

    Every runner but the DirectRunner runs on other machines: --out and the inputs must be on a
    shared filesystem (gs:// ...), and the workers need bigvl (--setup_file ./pyproject.toml,
    --extra_package, --requirements_file or --sdk_container_image). Dataflow needs --project,
    --region and a gs:// --temp_location; Flink and Spark take --flink_master / --spark_master_url
    (Beam's defaults start an embedded local cluster). Prism is refused: it downloads a binary at run time.
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions
    runner = runner_name(options)
    if runner in LOCAL_RUNNERS:
        return
    if runner == "PrismRunner":
        raise RunnerError("--runner PrismRunner downloads a binary at run time; use the DirectRunner (default) "
                          "locally or DataflowRunner / FlinkRunner / SparkRunner at scale")
    if runner not in REMOTE_RUNNERS:
        raise RunnerError(f"--runner {runner}: not one of {list(LOCAL_RUNNERS + REMOTE_RUNNERS)}")
    local = [p for p in [out, *inputs] if not is_remote(p)]
    if local:
        raise RunnerError(f"--runner {runner} runs on other machines: {local[0]!r} is a local path "
                          "(give gs:// paths for --images, --captions and --out)")
    setup = options.view_as(SetupOptions)
    container = options.view_as(WorkerOptions).sdk_container_image
    if not (setup.setup_file or setup.extra_packages or setup.requirements_file or container):
        raise RunnerError(f"--runner {runner}: its workers need bigvl: give --setup_file ./pyproject.toml "
                          "(or --extra_package dist/bigvl-*.tar.gz, --requirements_file, --sdk_container_image)")
    if runner == "DataflowRunner":
        gcp = options.view_as(GoogleCloudOptions)
        missing = [flag for flag, value in (("--project", gcp.project), ("--region", gcp.region),
                                            ("--temp_location", gcp.temp_location)) if not value]
        if missing:
            raise RunnerError(f"--runner DataflowRunner needs {' '.join(missing)}")
        if not gcp.temp_location.startswith("gs://"):
            raise RunnerError(f"--temp_location {gcp.temp_location}: Dataflow needs a gs:// path")


def counter_values(result, namespace: str) -> dict[str, int]:
    """{counter name: committed value} of a finished pipeline's Beam counters in `namespace`."""
    from apache_beam.metrics.metric import MetricsFilter
    counters = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    values: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        values[c.key.metric.name] = values.get(c.key.metric.name, 0) + int(value or 0)
    return values
