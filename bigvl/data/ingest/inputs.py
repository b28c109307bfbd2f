"""Downloaded images as samples: img2dataset webdataset tars, img2dataset parquet, plain folders.

    units = find_units(["/data/shards/*.tar"], shard_size=10000)
    for sample in read_unit(units[0]): ...   # Sample(key, image bytes, txt, meta, fault)

Formats (img2dataset's own files):
- webdataset: ``{shard:05d}.tar`` holding ``{key}.jpg|png|webp``, ``{key}.txt`` (caption) and
  ``{key}.json`` (url, key, status, width, height, uid or sha256 when asked), next to
  ``{shard:05d}.parquet`` (the metadata of every row, failed downloads included).
- parquet: ``key``, ``jpg`` (bytes; or png/webp), ``txt`` + metadata columns, one row per
  input row; a row whose ``status`` is not "success" is a failed download, one without image bytes a faulty sample.
- a folder of images (``.jpg|.jpeg|.png|.webp``) with an optional ``.txt`` beside each; its
  sorted files are cut into units of `shard_size`.

A unit is the unit of work and of resume: one output shard group per unit, in unit order.
Per-sample faults (an unreadable member, a text that is not UTF-8, metadata that is not JSON, no
image) come back as samples with `fault` set; a truncated or corrupt tar ends its unit with one
faulty sample naming the member where reading stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tarfile
from typing import Any, Iterator, Sequence

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class InputError(ValueError):
    """Input that cannot be converted at all (no file matches, unknown format); one line."""


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of input: a tar, a parquet file, or a chunk of a folder's images (`files`)."""
    index: int
    kind: str  # "tar" | "parquet" | "folder"
    path: str
    files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.path}[{self.files[0]}..]" if self.files else self.path


@dataclasses.dataclass
class Sample:
    """A downloaded sample: `key` (img2dataset's id), encoded `image`, `txt` caption, `meta` (its .json).

    `fault` is a one-line reason when the sample cannot be used (then `image` may be None).
    """
    key: str
    image: bytes | None
    txt: str | None
    meta: dict[str, Any]
    where: str
    fault: str = ""


def find_units(patterns: Sequence[str], shard_size: int) -> list[Unit]:
    """The input units of `--images` patterns (files, globs or folders), in the given order.

    Raises InputError naming a pattern that matches nothing or a file of another format.
    """
    from bigvl.data.ingest.beam_io import match  # local globs, or gs:// ... through Beam's filesystems
    units: list[Unit] = []
    for pattern in patterns:
        matches = match(pattern)
        if not matches:
            raise InputError(f"--images: no file matches {pattern!r}")
        for path in matches:
            if os.path.isdir(path):
                files = _folder_images(path)
                if not files:
                    raise InputError(f"--images: folder {path!r} holds no {'/'.join(IMAGE_EXTS)} image")
                for start in range(0, len(files), shard_size):
                    units.append(Unit(len(units), "folder", path, tuple(files[start:start + shard_size])))
            elif path.endswith(".tar"):
                units.append(Unit(len(units), "tar", path))
            elif path.endswith(".parquet"):
                units.append(Unit(len(units), "parquet", path))
            else:
                raise InputError(f"--images: {path!r} is not a .tar, a .parquet or a folder of images")
    return units


def _folder_images(folder: str) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found)


def read_unit(unit: Unit) -> Iterator[Sample]:
    """The samples of one unit, in file order (faulty ones included, with `fault` set)."""
    if unit.kind == "tar":
        yield from _read_tar(unit.path)
    elif unit.kind == "parquet":
        yield from _read_parquet(unit.path)
    else:
        yield from _read_folder(unit.path, unit.files)


def _sample_from_members(key: str, members: dict[str, bytes], where: str, faults: list[str]) -> Sample:
    image = next((members[e] for e in IMAGE_EXTS if e in members), None)
    txt, meta, fault = None, {}, "; ".join(faults)
    if "txt" in members:
        try:
            txt = members["txt"].decode("utf-8")
        except UnicodeDecodeError as e:
            fault = fault or f"{key}.txt: text is not UTF-8 (byte {e.start})"
    if "json" in members:
        try:
            meta = json.loads(members["json"])
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except ValueError as e:
            meta, fault = {}, fault or f"{key}.json: metadata is not a JSON object ({str(e).splitlines()[0][:80]})"
    if image is None and not fault:
        fault = f"no image member ({'/'.join(IMAGE_EXTS)}) for key {key}"
    return Sample(key, image, txt, meta, where, fault)


def _read_tar(path: str) -> Iterator[Sample]:
    key, members, faults, last, end = None, {}, [], "", 0
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = os.path.basename(info.name)
                this_key, _, ext = base.partition(".")
                if this_key != key and key is not None:
                    yield _sample_from_members(key, members, f"{path}:{key}", faults)
                    members, faults = {}, []
                key, last = this_key, info.name
                try:
                    data = tar.extractfile(info).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise _Truncated(info.name, e) from None
                members[ext.lower()] = data
            end = tar.offset
    except _Truncated as e:
        yield Sample(key or "?", None, None, {}, f"{path}:{e.member}",
                     f"tar unreadable from member {e.member!r} on ({type(e.error).__name__}: {e.error})")
        return
    except (tarfile.TarError, OSError, EOFError) as e:
        # the group being read may be incomplete: it is not kept
        where = f"after member {last!r}" if last else "at its start"
        yield Sample(key or "?", None, None, {}, f"{path}:{last}",
                     f"tar unreadable {where} ({type(e).__name__}: {str(e)[:120]})")
        return
    # tarfile ends a stream quietly at a truncated header: what follows the last member must be zeros
    if _has_data_after(path, end):
        yield Sample(key or "?", None, None, {}, f"{path}:{last}",
                     f"tar unreadable after member {last!r} (truncated or corrupt header at byte {end})")
        return  # the group being read may be incomplete: it is not kept
    if key is not None:
        yield _sample_from_members(key, members, f"{path}:{key}", faults)


def _has_data_after(path: str, offset: int) -> bool:
    with open(path, "rb") as f:
        if f.read(2) in (b"\x1f\x8b", b"BZ"):  # a compressed tar: offsets are not file positions
            return False
        f.seek(offset)
        while chunk := f.read(1 << 16):
            if chunk.count(0) != len(chunk):
                return True
    return False


class _Truncated(Exception):
    def __init__(self, member: str, error: Exception):
        super().__init__(member)
        self.member, self.error = member, error


def _read_parquet(path: str) -> Iterator[Sample]:
    import pyarrow.parquet as pq  # heavy import: only parquet inputs need it
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (arrow raises ArrowInvalid, OSError ...)
        yield Sample("?", None, None, {}, path, f"parquet unreadable ({type(e).__name__}: {str(e)[:120]})")
        return
    columns = pf.schema_arrow.names
    image_col = next((c for c in IMAGE_EXTS if c in columns), None)
    if image_col is None:
        raise InputError(f"--images: {path} has no image column ({'/'.join(IMAGE_EXTS)}); columns {columns}"
                         " (an img2dataset metadata file? pass the .tar beside it)")
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for values in batch.to_pylist():
            key = str(values.pop("key", row))
            image, txt = values.pop(image_col), values.pop("txt", None)
            row += 1
            if values.get("status", "success") != "success":
                continue  # a failed download: counted by `failed_downloads`
            yield Sample(key, image, txt, values, f"{path}#{row - 1}",
                         "" if image else f"no image member ({image_col} is empty) for key {key}")


def _read_folder(folder: str, files: Sequence[str]) -> Iterator[Sample]:
    for rel in files:
        full = os.path.join(folder, rel)
        key = os.path.splitext(rel)[0].replace(os.sep, "/")
        members = {}
        try:
            with open(full, "rb") as f:
                members["jpg"] = f.read()
            txt_path = os.path.splitext(full)[0] + ".txt"
            if os.path.exists(txt_path):
                with open(txt_path, "rb") as f:
                    members["txt"] = f.read()
        except OSError as e:
            yield Sample(key, None, None, {}, full, f"unreadable file ({type(e).__name__}: {e})")
            continue
        yield _sample_from_members(key, members, full, [])


def failed_downloads(unit: Unit) -> list[tuple[str, str]]:
    """(key, error message) of each row img2dataset could not download: from the tar's
    sidecar ``{shard}.parquet`` or the parquet unit itself; [] when there is none."""
    if unit.kind == "folder":
        return []
    path = unit.path[:-len(".tar")] + ".parquet" if unit.kind == "tar" else unit.path
    if not os.path.exists(path):
        return []
    import pyarrow.parquet as pq  # heavy import: only img2dataset metadata needs it
    try:
        names = pq.ParquetFile(path).schema_arrow.names
        if "status" not in names:
            return []
        wanted = [c for c in ("key", "status", "error_message") if c in names]
        rows = pq.read_table(path, columns=wanted).to_pylist()
    except Exception:  # noqa: BLE001 (an unreadable sidecar only loses the failure count)
        return []
    return [(str(r.get("key")), str(r.get("error_message") or "failed")[:120]) for r in rows
            if r["status"] != "success"]
