"""Staging: an in-memory DuckDB over an incoming Arrow table, for validating and typing
rows before they reach a store. It holds nothing of the stores; it lives here because
this layer keeps all the SQL. Row numbers are 1-based, in file order.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from appliance.errors import BadInput
from appliance.stores.features import connect_memory, ident

ROW = "_row"
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT",
                 "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}  # fmt: skip


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


class Staging:
    def __init__(self, table: pa.Table, is_text: bool) -> None:
        self.columns = table.column_names
        self.is_text = is_text
        self.con = connect_memory()
        rows = pa.array(range(1, table.num_rows + 1), pa.int64())
        self.con.register("src", table.append_column(ROW, rows))

    def _execute(self, sql: str, params: list | None = None) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql, params or [])
        except duckdb.OutOfMemoryException as exc:
            raise BadInput(
                f"the input does not fit in memory to be validated ({str(exc).splitlines()[0]}); "
                "split it into smaller files"
            ) from None

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def source_types(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._execute("DESCRIBE src").fetchall()}

    def text_counts(self) -> list[tuple[int, int, int]]:
        """Per column: values present, values that are whole numbers, that are numbers."""
        probes = ", ".join(
            f"count({ident(c)}), count({cast_expr(c, 'BIGINT', True)}), "
            f"count(TRY_CAST({ident(c)} AS DOUBLE))"
            for c in self.columns
        )
        counts = self._execute(f"SELECT {probes} FROM src").fetchone()
        return [tuple(counts[3 * i : 3 * i + 3]) for i in range(len(self.columns))]

    def first_unconvertible(self, types: dict[str, str]) -> dict[str, int | None]:
        """Per column, the first row whose value does not convert to its type."""
        casts = {c: cast_expr(c, types[c], self.is_text) for c in self.columns}
        checks = ", ".join(
            f"min(CASE WHEN {ident(c)} IS NOT NULL AND {casts[c]} IS NULL THEN {ROW} END)"
            for c in self.columns
        )
        firsts = self._execute(f"SELECT {checks} FROM src").fetchone()
        return dict(zip(self.columns, firsts, strict=True))

    def value(self, col: str, row: int) -> str:
        return self._execute(
            f"SELECT {ident(col)}::VARCHAR FROM src WHERE {ROW} = ?", [row]
        ).fetchone()[0]

    def first_null(self, col: str) -> int | None:
        return self._execute(f"SELECT min({ROW}) FROM src WHERE {ident(col)} IS NULL").fetchone()[0]

    def typed(self, types: dict[str, str]) -> pa.Table:
        select = ", ".join(
            f"{cast_expr(c, types[c], self.is_text)} AS {ident(c)}" for c in self.columns
        )
        typed = self._execute(f"SELECT {select} FROM src ORDER BY {ROW}").arrow()
        return typed.read_all() if isinstance(typed, pa.RecordBatchReader) else typed
