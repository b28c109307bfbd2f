"""Caption tables (recaption releases) joined to downloaded samples.

    spec = TableSpec.parse("recap.parquet", join="url", captions=["short=re_caption"])
    table = load_table(spec)            # TableError (one line) before any work if it cannot join
    table.lookup(sample)                # {"short": "..."} or None (no row for this sample)

A table is parquet, JSONL (``.jsonl``/``.json``, one object per line), CSV or TSV. `join`
names the table column whose value is matched against the sample's key (``key``) or a
field of the sample's metadata (its img2dataset .json: ``url``, ``uid``, ``sha256`` ...);
``COLUMN=FIELD`` when the two names differ. Known releases: Recap-DataComp-1B ``url``
(re_caption, org_caption), DataComp pools and PixelProse ``uid`` (text; vlm_caption), DreamLIP
CSVs keyed by URL. A column holding a list of captions expands to ``NAME_0 … NAME_k``.
LaCLIP's rewrites (one per line, aligned by row with the original CSV) join as
``cc3m_original.csv+cc3m_chatgpt.txt+cc3m_bard.txt``: each text file a column named by its stem.
A join value seen twice keeps its first row (the repeats are counted); an empty or null one is
skipped. Join values are compared as text: a CSV/TSV join column is read as strings (never
inferred as numbers, which would turn img2dataset's key ``000000123`` into ``123``); a parquet
or JSONL column keeps its stored type and an integer is compared as its decimal text (``123``),
since an integer column cannot hold leading zeros. A table that joins under 1 % of the images
is reported in one line (convert.py's `join_warnings`), which names an integer column.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any, Sequence

KEY_FIELD = "key"  # the sample's own key (img2dataset's id), not a metadata field


class TableError(ValueError):
    """A caption table that cannot be joined (missing file or column, unknown format); one line."""


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One `--captions TABLE --join COLUMN[=FIELD] --caption NAME=COLUMN …` group."""
    path: str
    column: str  # the table's join column
    field: str  # the sample's field it is matched against ("key" or a metadata field)
    captions: tuple[tuple[str, str], ...]  # (caption name, table column)

    @classmethod
    def parse(cls, path: str, join: str, captions: Sequence[str]) -> "TableSpec":
        """Builds a spec from the command-line strings; raises TableError on a malformed one."""
        if not join:
            raise TableError(f"--captions {path}: give --join COLUMN (the column matched against the sample)")
        column, _, field = join.partition("=")
        pairs = []
        for item in captions:
            name, sep, col = item.partition("=")
            if not sep or not name or not col:
                raise TableError(f"--captions {path}: --caption {item!r} is not NAME=COLUMN")
            pairs.append((name, col))
        if not pairs:
            raise TableError(f"--captions {path}: give at least one --caption NAME=COLUMN")
        return cls(path, column, field or column, tuple(pairs))


def _nearest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f" (nearest: {close[0]!r})" if close else ""


def _read_columns(path: str, columns: Sequence[str] | None, strings: Sequence[str] = ()):
    """An arrow table of `path` (only `columns` when given); its column names when columns is None.
    CSV/TSV columns named in `strings` are read as text, not type-inferred (join keys keep leading zeros).

    ``TABLE+A.txt+B.txt`` adds the lines of A.txt and B.txt as columns A and B, row by row (LaCLIP:
    one rewrite per line, aligned with the original CSV); a line count that differs is a TableError.
    """
    import pyarrow as pa  # heavy import: only caption tables need it
    base, *line_files = path.split("+")
    if not line_files:
        return _read_table(path, columns, strings=strings)
    table = _read_table(base, None, whole=True, strings=strings)
    for name in line_files:
        with open(name, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != table.num_rows:
            raise TableError(f"--captions {path}: {name} has {len(lines)} lines but {base} has {table.num_rows} "
                             "rows (row-aligned rewrites need one line per row)")
        table = table.append_column(os.path.basename(name).rsplit(".", 1)[0], pa.array(lines))
    return table.column_names if columns is None else table.select(list(columns))


def _read_table(path: str, columns: Sequence[str] | None, whole: bool = False, strings: Sequence[str] = ()):
    import pyarrow as pa  # heavy import: only caption tables need it
    ext = path.lower().rsplit(".", 1)[-1]
    try:
        if ext == "parquet":
            import pyarrow.parquet as pq
            if columns is None and not whole:
                return pq.ParquetFile(path).schema_arrow.names
            return pq.read_table(path, columns=list(columns) if columns else None)
        if ext in ("csv", "tsv"):
            import pyarrow.csv as pcsv
            table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(
                delimiter="\t" if ext == "tsv" else ",", newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(include_columns=list(columns) if columns else None,
                                                    column_types={name: pa.string() for name in strings}))
        elif ext in ("jsonl", "json"):
            import pyarrow.json as pjson
            table = pjson.read_json(path)
        else:
            raise TableError(f"--captions {path}: unknown table format .{ext} (parquet, jsonl, csv or tsv)")
    except TableError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise TableError(f"--captions {path}: unreadable ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]})") from None
    if whole:
        return table
    if columns is None:
        return table.column_names
    return table.select(list(columns))


class CaptionTable:
    """A loaded table: join value → {caption name: text}; `rows`, `repeated` (join values seen again),
    `key_type` (the arrow type of the join column, e.g. "string" or "int64")."""

    def __init__(self, spec: TableSpec, index: dict[str, dict[str, str]], rows: int, repeated: int,
                 key_type: str = "string"):
        self.spec, self.index, self.rows, self.repeated, self.key_type = spec, index, rows, repeated, key_type

    def join_value(self, key: str, meta: dict[str, Any]) -> str | None:
        """The sample's value for this table's join (None when the sample lacks the field)."""
        value = key if self.spec.field == KEY_FIELD else meta.get(self.spec.field)
        return None if value is None else str(value)

    def lookup(self, key: str, meta: dict[str, Any]) -> dict[str, str] | None:
        """The captions of the sample's row, or None when the table has no row for it."""
        value = self.join_value(key, meta)
        return None if value is None else self.index.get(value)

    def extras(self, key: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Record extras this table adds for the sample ({} here; DataCompDR: its teacher embeddings)."""
        return {}


def check_table(spec: TableSpec) -> list[str]:
    """The table's column names; raises TableError when the file, join or a caption column is missing."""
    for part in spec.path.split("+"):
        if not os.path.isfile(part):
            raise TableError(f"--captions {spec.path}: no such file {part}")
    names = _read_columns(spec.path, None)
    check_columns(spec, names)
    return names


def check_columns(spec: TableSpec, names: Sequence[str]) -> None:
    """Raises TableError (one line, with the nearest name) when the join or a caption column is not in `names`."""
    if spec.column not in names:
        raise TableError(f"--captions {spec.path}: no join column {spec.column!r}{_nearest(spec.column, names)}; "
                         f"columns: {list(names)}")
    for name, column in spec.captions:
        if column not in names:
            raise TableError(f"--captions {spec.path}: --caption {name}={column} names no column"
                             f"{_nearest(column, names)}; columns: {list(names)}")


def join_text(value) -> str | None:
    """A table cell's join value as text (an integer as its decimal text); None for a null or empty one."""
    if value is None:
        return None
    value = str(value)
    return value or None


def row_captions(spec: TableSpec, cells: dict[str, Any]) -> dict[str, str]:
    """The captions of one table row ({column: cell}): a null or empty cell is left out, a list cell
    gives NAME_0 … NAME_k."""
    captions: dict[str, str] = {}
    for name, column in spec.captions:
        cell = cells[column]
        if isinstance(cell, (list, tuple)):
            for i, text in enumerate(cell):
                if isinstance(text, str) and text.strip():
                    captions[f"{name}_{i}"] = text
        elif isinstance(cell, str) and cell.strip():
            captions[name] = cell
    return captions


def load_table(spec: TableSpec) -> CaptionTable:
    """Reads the join column and the caption columns of `spec` into a lookup index.

    A caption cell that is null or empty is left out of that row; a list cell gives
    NAME_0 … NAME_k. Raises TableError (one line) on a table that cannot be joined.
    """
    check_table(spec)
    columns = sorted({spec.column, *(c for _, c in spec.captions)})
    table = _read_columns(spec.path, columns, strings=(spec.column,))
    keys = table.column(spec.column).to_pylist()
    cells = {column: table.column(column).to_pylist() for column in columns}
    index: dict[str, dict[str, str]] = {}
    repeated = 0
    for row, value in enumerate(keys):
        value = join_text(value)
        if value is None:
            continue
        if value in index:
            repeated += 1
            continue
        index[value] = row_captions(spec, {column: cells[column][row] for column in columns})
    return CaptionTable(spec, index, len(keys), repeated, str(table.column(spec.column).type))
