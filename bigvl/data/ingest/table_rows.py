"""Caption tables read in parts, row by row, never whole (the Beam pipeline's side of tables.py).

    parts, key_type = plan_table(0, spec)     # TableError (one line) before any work
    for row, value, captions in iter_part(spec, parts[0]): ...

A parquet table is cut into one part per row group (read in parallel, each a few batches in
memory); a CSV/TSV/JSONL table is one part streamed in blocks; LaCLIP's ``TABLE+A.txt+B.txt``
streams the base table beside its line files. `row` is the row's position in the whole table
(the first row of a repeated join value wins, as in `load_table`); `value` the join value as
text (None: null or empty), `captions` the row's captions (`tables.row_captions`, the one
implementation `load_table` uses). Paths may be local or on any Beam filesystem (gs:// ...).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from bigvl.data.ingest.beam_io import exists, open_file
from bigvl.data.ingest.tables import TableError, TableSpec, check_columns, join_text, row_captions

BATCH_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class TablePart:
    """Rows of table `table` (its index in the run): parquet `row_groups`, or the whole file when ()."""
    table: int
    path: str
    first_row: int
    row_groups: tuple[int, ...] = ()


def _format(path: str) -> str:
    ext = path.lower().rsplit(".", 1)[-1]
    if ext not in ("parquet", "csv", "tsv", "jsonl", "json"):
        raise TableError(f"--captions {path}: unknown table format .{ext} (parquet, jsonl, csv or tsv)")
    return ext


def _csv_reader(f, path: str, columns, join: str):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    ext = _format(path)
    return pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=1 << 22),
                         parse_options=pcsv.ParseOptions(delimiter="\t" if ext == "tsv" else ",",
                                                         newlines_in_values=True),
                         convert_options=pcsv.ConvertOptions(include_columns=list(columns) if columns else None,
                                                             column_types={join: pa.string()}))


def _batches(path: str, columns, join: str, row_groups=()) -> Iterator:
    """Arrow record batches of `path` (`columns` only), streamed."""
    import pyarrow.json as pjson
    import pyarrow.parquet as pq
    ext = _format(path)
    with open_file(path) as f:
        if ext == "parquet":
            yield from pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS, columns=columns,
                                                      row_groups=list(row_groups) or None)
        elif ext in ("csv", "tsv"):
            yield from _csv_reader(f, path, columns, join)
        else:
            for batch in pjson.open_json(f):
                yield batch.select(columns) if columns else batch


def _schema(path: str, join: str):
    """(column names, the arrow type of `join`) from the file's schema or first block."""
    import pyarrow as pa
    import pyarrow.json as pjson
    import pyarrow.parquet as pq
    ext = _format(path)
    try:
        with open_file(path) as f:
            if ext == "parquet":
                schema = pq.ParquetFile(f).schema_arrow
            elif ext in ("csv", "tsv"):
                schema = _csv_reader(f, path, None, join).schema
            else:
                schema = pjson.open_json(f).schema
    except (pa.ArrowException, OSError) as e:
        raise TableError(f"--captions {path}: unreadable ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]})") from None
    names = list(schema.names)
    return names, (str(schema.field(join).type) if join in names else "")


def _count_lines(path: str) -> int:
    count, last = 0, b"\n"
    with open_file(path) as f:
        while chunk := f.read(1 << 22):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _count_rows(path: str, join: str) -> int:
    return sum(batch.num_rows for batch in _batches(path, [join], join))


def plan_table(index: int, spec: TableSpec) -> tuple[list[TablePart], str]:
    """The parts of the table `spec` (the run's table `index`) and its join column's arrow type.

    Reads schemas (and, for LaCLIP line files, counts lines) but no table body; raises TableError
    naming the file and column when the table cannot be joined, as `tables.check_table` does.
    """
    base, *line_files = spec.path.split("+")
    for part in (base, *line_files):
        if not exists(part):
            raise TableError(f"--captions {spec.path}: no such file {part}")
    names, key_type = _schema(base, spec.column)
    if line_files:
        rows = _count_rows(base, names[0])
        for name in line_files:
            lines = _count_lines(name)
            if lines != rows:
                raise TableError(f"--captions {spec.path}: {name} has {lines} lines but {base} has {rows} "
                                 "rows (row-aligned rewrites need one line per row)")
            names.append(os.path.basename(name).rsplit(".", 1)[0])
    check_columns(spec, names)
    if _format(base) != "parquet" or line_files:
        return [TablePart(index, spec.path, 0)], key_type
    import pyarrow.parquet as pq
    with open_file(base) as f:
        meta = pq.ParquetFile(f).metadata
    parts, first = [], 0
    for group in range(meta.num_row_groups):
        parts.append(TablePart(index, spec.path, first, (group,)))
        first += meta.row_group(group).num_rows
    return parts or [TablePart(index, spec.path, 0)], key_type


def iter_part(spec: TableSpec, part: TablePart) -> Iterator[tuple[int, str | None, dict[str, str]]]:
    """(row, join value as text or None, captions) of each row of `part`, in table order."""
    base, *line_files = spec.path.split("+")
    stems = [os.path.basename(name).rsplit(".", 1)[0] for name in line_files]
    from_file = sorted({spec.column, *(c for _, c in spec.captions)} - set(stems))
    handles = [open_file(name) for name in line_files]
    try:
        row = part.first_row
        for batch in _batches(base, from_file, spec.column, part.row_groups):
            cells = {column: batch.column(column).to_pylist() for column in from_file}
            for i in range(batch.num_rows):
                row_cells = {column: cells[column][i] for column in from_file}
                for stem, handle in zip(stems, handles):
                    row_cells[stem] = handle.readline().decode("utf-8", errors="replace").rstrip("\n")
                yield row, join_text(row_cells[spec.column]), row_captions(spec, row_cells)
                row += 1
    finally:
        for handle in handles:
            handle.close()
