"""Sources: what an ingest reads, as a stream of Arrow record batches.

Files, chosen by extension (databases by their first bytes):

- CSV (``.csv``, ``.txt``): read as text in blocks (``CSV_BLOCK``); types are inferred
  by a first streaming pass when the table is new, then values are converted. Errors
  name the row and its line (row N is line N+1, the header being line 1).
- Parquet (``.parquet``, ``.pq``): row group by row group, in batches of ``BATCH_ROWS``.
- NDJSON (``.json``, ``.jsonl``, ``.ndjson``): one JSON object per line, typed by Arrow.
  A line that is not JSON, or a field whose type changes between lines, is named by
  its line number.
- Arrow IPC (``.arrow``, ``.feather``, ``.ipc``): the file format (memory-mapped) or the
  stream format.
- A table of a SQLite (``.sqlite``, ``.sqlite3``, ``.db``) or DuckDB (``.duckdb``) file,
  named by ``from_table``, opened read-only; its values are read as text and typed like
  a CSV's (SQLite) or keep their types (DuckDB).

In memory (the Python API): a pyarrow ``Table``, ``RecordBatch`` or
``RecordBatchReader``, a pandas or Polars DataFrame, or anything exporting an Arrow C
stream (``__arrow_c_stream__``). pandas and Polars are never imported here: a frame is
converted by its own ``to_arrow`` or by pyarrow.

Nothing is read whole: each source yields batches, so a file larger than memory
streams through. Row numbers are 1-based and global across batches.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from appliance.errors import BadInput
from appliance.stores import staging

BATCH_ROWS = 65_536
CSV_BLOCK = 1 << 20  # bytes per CSV or JSON block: the longest row or line taken
MAX_ROW_BYTES = 16 << 20  # the longest header line read
CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db", ".duckdb")
KNOWN = CSV_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES + ARROW_SUFFIXES + DB_SUFFIXES


@dataclass
class Source:
    """A restartable stream of record batches with what errors should call it."""

    where: str  # the file (resolved) or the label of in-memory data
    columns: list[str]
    is_text: bool  # values are text to be typed (CSV, SQLite)
    open: Callable[[], Iterator[pa.RecordBatch]]
    total: int | None = None  # in ``unit``s, for progress
    unit: str = "rows"
    done: Callable[[], int] | None = None  # how far the current pass is, in ``unit``s
    lines: bool = False  # rows are lines after a header (CSV): errors name the line
    restartable: bool = True
    schema: pa.Schema | None = field(default=None)

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.open()
        except BadInput:
            raise
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{self.where}: cannot be read: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def open_source(source: Any, from_table: str | None = None, label: str | None = None) -> Source:
    """The source for a path or an in-memory frame."""
    if isinstance(source, str | Path):
        return _file(Path(source), from_table)
    if from_table is not None:
        raise BadInput("--from-table applies to a SQLite or DuckDB file, not to in-memory data")
    return _memory(source, label or "data")


# -- in memory --------------------------------------------------------------------


def _memory(obj: Any, where: str) -> Source:
    table = _as_arrow(obj, where)
    if isinstance(table, pa.RecordBatchReader):
        reader = table
        used = [False]

        def once() -> Iterator[pa.RecordBatch]:
            if used[0]:
                raise BadInput(f"{where}: a stream of record batches can be read only once")
            used[0] = True
            yield from reader

        return Source(where, reader.schema.names, False, once, restartable=False,
                      schema=reader.schema)  # fmt: skip
    return Source(where, table.column_names, False,
                  lambda: iter(table.to_batches(max_chunksize=BATCH_ROWS)),
                  total=table.num_rows, schema=table.schema)  # fmt: skip


def _as_arrow(obj: Any, where: str) -> pa.Table | pa.RecordBatchReader:
    """An Arrow table or reader for a frame, without importing its library."""
    try:
        if isinstance(obj, pa.Table | pa.RecordBatchReader):
            return obj
        if isinstance(obj, pa.RecordBatch):
            return pa.Table.from_batches([obj])
        module = type(obj).__module__.split(".")[0]
        if module == "pandas":
            return pa.Table.from_pandas(obj, preserve_index=False)
        if module == "polars" and hasattr(obj, "to_arrow"):
            return obj.to_arrow()
        if hasattr(obj, "__arrow_c_stream__"):
            return pa.RecordBatchReader.from_stream(obj)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise BadInput(f"{where}: cannot be converted to Arrow: {_first_line(exc)}") from None
    raise BadInput(
        f"{where}: a {type(obj).__name__} is not something to ingest; give a file path, "
        "a pyarrow Table or RecordBatchReader, or a pandas or Polars DataFrame"
    )


# -- files ------------------------------------------------------------------------


def _file(path: Path, from_table: str | None) -> Source:
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not a file")
    where = str(path.resolve())
    suffix = path.suffix.lower()
    if suffix not in KNOWN:
        raise BadInput(
            f"{path}: unknown file type {suffix!r}; give a .csv, .parquet, .jsonl, .arrow, "
            ".sqlite or .duckdb file"
        )
    if suffix in DB_SUFFIXES:
        return _database(path, where, from_table)
    if from_table is not None:
        raise BadInput(f"{path}: --from-table applies to a SQLite or DuckDB file")
    try:
        if suffix in CSV_SUFFIXES:
            return _csv(path, where)
        if suffix in PARQUET_SUFFIXES:
            return _parquet(path, where)
        if suffix in JSON_SUFFIXES:
            return _ndjson(path, where)
        return _arrow(path, where)
    except BadInput:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{path}: cannot be read: {_first_line(exc)}") from None


class _Counting(io.RawIOBase):
    """A file that counts the bytes read from it (for progress)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 -- closed with this object
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)
        self.count += n or 0
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


def _csv(path: Path, where: str) -> Source:
    # The csv module's field limit is process-wide (the MLflow CSV endpoint relies on
    # its default): raised only while the header is read.
    default = csv.field_size_limit(MAX_ROW_BYTES)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
    finally:
        csv.field_size_limit(default)
    if not header:
        raise BadInput(f"{path}: is empty (no header line)")
    size = path.stat().st_size
    state = {"file": None}

    def batches() -> Iterator[pa.RecordBatch]:
        raw = _Counting(path)
        state["file"] = raw
        rows = 0
        try:
            reader = pacsv.open_csv(
                io.BufferedReader(raw, CSV_BLOCK),
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in header}, strings_can_be_null=True
                ),
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    text = _first_line(exc)
                    if "straddle" in text or "block" in text:
                        raise BadInput(f"{path}: after row {rows} (line {rows + 1}): a row is "
                                       f"longer than {CSV_BLOCK >> 20} MiB") from None  # fmt: skip
                    raise BadInput(f"{path}: cannot be read after row {rows} (line {rows + 1}): "
                                   f"{text}") from None  # fmt: skip
                rows += batch.num_rows
                yield batch
        finally:
            raw.close()

    first = batches()  # a file that is not CSV at all is named now, not mid-ingest
    try:
        next(first, None)
    finally:
        first.close()
    return Source(where, header, True, batches, total=size, unit="bytes",
                  done=lambda: state["file"].count if state["file"] else 0,
                  lines=True)  # fmt: skip


def _parquet(path: Path, where: str) -> Source:
    meta = pq.ParquetFile(path)
    schema = meta.schema_arrow
    total = meta.metadata.num_rows
    meta.close()

    def batches() -> Iterator[pa.RecordBatch]:
        with pq.ParquetFile(path) as f:
            yield from f.iter_batches(batch_size=BATCH_ROWS)

    return Source(where, schema.names, False, batches, total=total, schema=schema)


def _arrow(path: Path, where: str) -> Source:
    def reader() -> tuple[Any, Any]:
        source = pa.memory_map(str(path))
        try:
            return source, ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                return source, ipc.open_stream(source)
            except pa.ArrowInvalid:
                source.close()
                raise BadInput(f"{path}: is not an Arrow IPC file or stream") from None

    source, first = reader()
    schema = first.schema
    total = None
    if isinstance(first, ipc.RecordBatchFileReader):
        total = sum(first.get_batch(i).num_rows for i in range(first.num_record_batches))
    source.close()

    def batches() -> Iterator[pa.RecordBatch]:
        src, r = reader()
        try:
            if isinstance(r, ipc.RecordBatchFileReader):
                for i in range(r.num_record_batches):
                    yield r.get_batch(i)
            else:
                yield from r
        finally:
            src.close()

    return Source(where, schema.names, False, batches, total=total, schema=schema)


def _ndjson(path: Path, where: str) -> Source:
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path}: has no rows")
    state = {"file": None}

    def open_reader() -> Any:
        raw = _Counting(path)
        state["file"] = raw
        try:
            return raw, pajson.open_json(
                io.BufferedReader(raw, CSV_BLOCK),
                read_options=pajson.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
            )
        except pa.ArrowInvalid as exc:
            raw.close()
            raise BadInput(
                json_problem(path) or f"{path}: cannot be read: {_first_line(exc)}"
            ) from None

    raw, first = open_reader()
    schema = first.schema
    raw.close()

    def batches() -> Iterator[pa.RecordBatch]:
        f, reader = open_reader()
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise BadInput(
                        json_problem(path) or f"{path}: cannot be read: {_first_line(exc)}"
                    ) from None
                yield batch
        finally:
            f.close()

    return Source(where, schema.names, False, batches, total=size, unit="bytes",
                  done=lambda: state["file"].count if state["file"] else 0,
                  schema=schema)  # fmt: skip


JSON_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
              dict: "an object", list: "a list"}  # fmt: skip


def json_problem(path: Path) -> str | None:
    """The first line of an NDJSON file that Arrow cannot take, said plainly: not JSON,
    not an object, or a field whose kind of value differs from an earlier line's. One
    line at a time, so any size of file is fine."""
    kinds: dict[str, tuple[str, int]] = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if len(line) > CSV_BLOCK:
                return f"{path}: line {number} is longer than {CSV_BLOCK >> 20} MiB"
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                return f"{path}: line {number} is not valid JSON ({_first_line(exc)})"
            if not isinstance(value, dict):
                return f"{path}: line {number} is not a JSON object"
            for name, v in value.items():
                if v is None:
                    continue
                kind = JSON_KINDS[type(v)]
                seen = kinds.setdefault(name, (kind, number))
                if seen[0] != kind:
                    return (f"{path}: line {number}, field {name!r}: {kind} where line "
                            f"{seen[1]} has {seen[0]}; a field holds one kind of value")  # fmt: skip
    return None


def _database(path: Path, where: str, from_table: str | None) -> Source:
    kind = staging.database_kind(path)
    if kind is None:
        raise BadInput(
            f"{path}: is not a SQLite or DuckDB database (or it is encrypted, like a Falaj store)"
        )
    tables = staging.database_tables(path, kind)
    if from_table is None:
        raise BadInput(f"{path}: name the table to read with --from-table "
                       f"(tables: {', '.join(tables) or 'none'})")  # fmt: skip
    if from_table not in tables:
        raise BadInput(f"{path}: has no table {from_table!r} "
                       f"(tables: {', '.join(tables) or 'none'})")  # fmt: skip
    columns, total, schema = staging.database_columns(path, kind, from_table)
    where = f"{where} table {from_table!r}"
    return Source(where, columns, kind == "sqlite",
                  lambda: staging.database_batches(path, kind, from_table, BATCH_ROWS),
                  total=total, schema=schema)  # fmt: skip
