"""Staging: an in-memory DuckDB over one incoming record batch at a time, for typing
rows and checking them against a contract before they reach a store; and read-only
access to the SQLite and DuckDB files an ingest reads tables from. It holds nothing of
the stores; it lives here because this layer keeps all the SQL. Row numbers are 1-based,
in input order, global across batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.errors import BadInput
from appliance.stores.features import connect_memory, ident
from appliance.stores.results import arrow_table

ROW = "_row"
FAIL = "_fail"
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT",
                 "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}  # fmt: skip
NUMERIC_TYPES = INTEGER_TYPES | {"HUGEINT", "FLOAT", "DOUBLE", "REAL"}
STAGING_SETTINGS = ("threads = 1", "memory_limit = '256MB'", "allocator_flush_threshold = '16MB'")


def cast_expr(col: str, duck_type: str, is_text: bool) -> str:
    """A DuckDB expression giving the typed value, or NULL where it does not convert."""
    q = ident(col)
    if duck_type == "TIMESTAMP":
        # through TIMESTAMPTZ so offsets like +04:00 are honoured; stored as UTC
        return f"TRY_CAST(TRY_CAST({q} AS TIMESTAMPTZ) AS TIMESTAMP)"
    cast = f"TRY_CAST({q} AS {duck_type})"
    if duck_type in INTEGER_TYPES:
        # TRY_CAST rounds 1.5 to 2: an integer column takes only whole numbers
        whole = (
            f"regexp_full_match(trim({q}), '[+-]?[0-9]+')"
            if is_text
            else f"TRY_CAST({q} AS DOUBLE) = floor(TRY_CAST({q} AS DOUBLE))"
        )
        return f"CASE WHEN {whole} THEN {cast} END"
    return cast


def is_numeric(duck_type: str) -> bool:
    return duck_type in NUMERIC_TYPES or duck_type.startswith("DECIMAL")


def is_nested(duck_type: str) -> bool:
    return duck_type.endswith("]") or duck_type.startswith(("STRUCT", "MAP", "UNION"))


class Staging:
    """One in-memory connection; ``load`` a batch, then ask about it."""

    def __init__(self) -> None:
        self.con = connect_memory()
        # one batch at a time needs little: keep this instance small and give freed
        # memory back, so an ingest's footprint does not grow with the input
        for setting in STAGING_SETTINGS:
            self.con.execute(f"SET {setting}")
        self.columns: list[str] = []
        self.is_text = False

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql, list(params))
        except duckdb.OutOfMemoryException as exc:
            raise BadInput(
                f"a batch does not fit in memory to be validated ({str(exc).splitlines()[0]})"
            ) from None

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def load(self, batch: pa.RecordBatch | pa.Table, first_row: int, is_text: bool) -> None:
        """Stage a batch whose first row is number ``first_row``."""
        with suppress(duckdb.Error):
            self.con.unregister("src")
        self.columns = batch.schema.names
        self.is_text = is_text
        rows = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
        self.con.register("src", batch.append_column(ROW, rows))

    def arrow_types(self, schema: pa.Schema) -> dict[str, str]:
        """The DuckDB type of each column of an Arrow schema."""
        self.con.register("_schema", schema.empty_table())
        try:
            return {r[0]: r[1] for r in self._execute("DESCRIBE _schema").fetchall()}
        finally:
            self.con.unregister("_schema")

    def text_counts(self, columns: Sequence[str]) -> list[tuple[int, int, int]]:
        """Per column: values present, values that are whole numbers, that are numbers."""
        probes = []
        for c in columns:
            q = ident(c)
            number = f"TRY_CAST({q} AS DOUBLE) IS NOT NULL"
            # the pattern only where the value is a number at all: most text is not
            whole = (f"CASE WHEN {number} THEN CASE WHEN "
                     f"regexp_full_match(trim({q}), '[+-]?[0-9]+') THEN 1 END END")  # fmt: skip
            probes.append(f"count({q}), count({whole}), count(CASE WHEN {number} THEN 1 END)")
        counts = self._execute(f"SELECT {', '.join(probes)} FROM src").fetchone()
        return [tuple(counts[3 * i : 3 * i + 3]) for i in range(len(columns))]

    def check(self, types: dict[str, str], checks: Sequence[Any]) -> pa.Table:
        """The staged rows typed (columns in ``types`` order), with ``_row`` and ``_fail``:
        the indexes into ``checks`` of the checks each row fails. A check has
        ``column``, ``rule`` (type, missing, nullable, min, max, allowed, freshness) and
        ``arg`` (the bound, the allowed values, the oldest event time allowed)."""
        index = {c: i for i, c in enumerate(types)}
        inner = ", ".join(
            f"{ident(c)} AS _r{i}, {cast_expr(c, types[c], self.is_text)} AS _c{i}"
            for c, i in index.items()
        )
        conds, params = [], []
        for k, chk in enumerate(checks):
            i = index[chk.column]
            raw, val = f"_r{i}", f"_c{i}"
            if chk.rule == "type":
                cond = f"{raw} IS NOT NULL AND {val} IS NULL"
            elif chk.rule in ("missing", "nullable"):
                cond = f"{raw} IS NULL"
            elif chk.rule in ("min", "max"):
                cond = f"{val} {'<' if chk.rule == 'min' else '>'} ?::DOUBLE"
                params.append(float(chk.arg))
            elif chk.rule == "allowed":
                options = ", ".join(f"TRY_CAST(?::VARCHAR AS {types[chk.column]})"
                                    for _ in chk.arg)  # fmt: skip
                cond = f"{val} IS NOT NULL AND NOT list_contains([{options}], {val})"
                params.extend(_text(v) for v in chk.arg)
            elif chk.rule == "freshness":
                cond = f"{val} < ?::TIMESTAMP"
                params.append(chk.arg)
            else:
                raise ValueError(f"unknown rule {chk.rule!r}")
            conds.append(f"CASE WHEN {cond} THEN {k} END")
        fail = (
            f"list_filter([{', '.join(conds)}], x -> x IS NOT NULL)::INTEGER[]"
            if conds
            else "[]::INTEGER[]"
        )
        select = ", ".join(f"_c{i} AS {ident(c)}" for c, i in index.items())
        typed = self._execute(
            f"WITH t AS (SELECT {ROW}, {inner} FROM src) "
            f"SELECT {select}, {ROW}, {fail} AS {FAIL} FROM t ORDER BY {ROW}",
            params,
        )
        return arrow_table(typed)


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# -- tables of SQLite and DuckDB files ---------------------------------------------

SQLITE_MAGIC = b"SQLite format 3\x00"


def database_kind(path: Path) -> str | None:
    """'sqlite' or 'duckdb' by the file's first bytes; None for anything else (an
    encrypted SQLCipher file looks like noise)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    return None


def _sqlite(path: Path) -> sqlite3.Connection:
    try:
        # batches may be pulled from another thread (DuckDB reads the stream it inserts)
        return sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise BadInput(f"{path}: cannot be opened as a SQLite database: {exc}") from None


def _duckdb(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(
            str(path),
            read_only=True,
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "temp_directory": "",
            },  # fmt: skip
        )
    except duckdb.Error as exc:
        text = str(exc).splitlines()[0]
        if "encrypted" in text:
            raise BadInput(
                f"{path}: is an encrypted DuckDB database (a Falaj store?); it cannot be "
                "read as a source"
            ) from None
        raise BadInput(f"{path}: cannot be opened as a DuckDB database: {text}") from None
    con.execute("SET TimeZone = 'UTC'")
    return con


def _db_error(path: Path, exc: Exception) -> BadInput:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return BadInput(f"{path}: cannot be read: {text}")


def database_tables(path: Path, kind: str) -> list[str]:
    try:
        if kind == "sqlite":
            with closing(_sqlite(path)) as con:
                rows = con.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                ).fetchall()
        else:
            with closing(_duckdb(path)) as con:
                rows = con.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_catalog = current_database() ORDER BY table_name"
                ).fetchall()
    except (sqlite3.Error, duckdb.Error) as exc:
        raise _db_error(path, exc) from None
    return [r[0] for r in rows]


def database_columns(path: Path, kind: str, table: str) -> tuple[list[str], int, pa.Schema | None]:
    """A table's column names, row count and (DuckDB) Arrow schema."""
    q = ident(table)
    schema = None
    try:
        con = _sqlite(path) if kind == "sqlite" else _duckdb(path)
        with closing(con):
            cur = con.execute(f"SELECT * FROM {q} LIMIT 0")
            columns = [d[0] for d in cur.description]
            if kind == "duckdb":
                schema = cur.fetch_record_batch().schema
            count = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    except (sqlite3.Error, duckdb.Error) as exc:
        raise _db_error(path, exc) from None
    return columns, count, schema


def database_batches(
    path: Path, kind: str, table: str, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The table's rows in batches: DuckDB's keep their types; SQLite's values (whose
    types vary row by row) come as text, to be typed like a CSV's."""
    q = ident(table)
    if kind == "duckdb":
        con = _duckdb(path)
        try:
            reader = con.execute(f"SELECT * FROM {q}").fetch_record_batch(batch_rows)
            yield from reader
        except duckdb.Error as exc:
            raise _db_error(path, exc) from None
        finally:
            con.close()
        return
    con = _sqlite(path)
    try:
        cur = con.execute(f"SELECT * FROM {q}")
        columns = [d[0] for d in cur.description]
        done = 0
        while rows := cur.fetchmany(batch_rows):
            arrays = []
            for j, name in enumerate(columns):
                values = []
                for n, row in enumerate(rows, start=done + 1):
                    v = row[j]
                    if isinstance(v, bytes):
                        raise BadInput(f"{path}: row {n}, column {name!r}: a binary (BLOB) "
                                       "value; give text or numbers")  # fmt: skip
                    values.append(None if v is None else repr(v) if isinstance(v, float)
                                  else str(v))  # fmt: skip
                arrays.append(pa.array(values, pa.string()))
            done += len(rows)
            yield pa.RecordBatch.from_arrays(arrays, names=columns)
    except sqlite3.Error as exc:
        raise _db_error(path, exc) from None
    finally:
        con.close()
