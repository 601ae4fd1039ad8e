"""Reading and validating a CSV or Parquet file into a typed Arrow table.

Nothing here writes to a store: ``prepare`` either returns a table that will insert
cleanly, or raises ``BadInput`` naming the file, row and column. CSV files are read as
text through Arrow and converted with DuckDB's TRY_CAST (``stores.staging``), so the
first value that does not convert can be named exactly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from appliance.errors import BadInput, BadName
from appliance.stores.staging import Staging

MAX_NAME = 255
# A text column whose values are mostly numbers is a numeric column with bad values,
# not a text column: refuse it rather than store the numbers as text.
NUMERIC_MAJORITY = 0.9


@dataclass(frozen=True)
class Prepared:
    table: pa.Table  # typed, in file order, without the row index
    types: dict[str, str]  # column -> DuckDB type
    rows: int


def check_column(path: Path | str, name: str) -> str:
    """A column name from a file: any printable text works (it is quoted everywhere),
    except what the store reserves or cannot tell apart."""
    where = f"{path}: column {name!r}"
    if not name or not name.strip():
        raise BadName(f"{where}: a column name is empty")
    if name.startswith("_"):
        raise BadName(f"{where}: names starting with '_' are reserved")
    if len(name) > MAX_NAME:
        raise BadName(f"{where}: the name is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadName(f"{where}: the name holds a control or invisible character")
    return name


def read(path: Path) -> tuple[pa.Table, bool]:
    """The file as an Arrow table; CSV columns as text (second value True)."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path), False
        if suffix in (".csv", ".txt"):
            header = pacsv.read_csv(
                path, read_options=pacsv.ReadOptions(block_size=1 << 16)
            ).column_names
            opts = pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=True
            )
            return pacsv.read_csv(path, convert_options=opts), True
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
    raise BadInput(f"{path}: unknown file type {suffix!r}; give a .csv or .parquet file")


def prepare(
    source: Path | pa.Table,
    entity: str,
    timestamp: str,
    existing: dict[str, str] | None = None,
    label: str = "data",
) -> Prepared:
    """Validate and type the rows of a file or an Arrow table (named ``label`` in
    errors); ``existing`` is the target table's column types."""
    if isinstance(source, pa.Table):
        path, src, is_text = label, source, False
    else:
        path = Path(source)
        src, is_text = read(path)
    if src.num_rows == 0:
        raise BadInput(f"{path}: has no rows")
    columns = src.column_names
    seen: dict[str, str] = {}
    for col in columns:
        check_column(path, col)
        # DuckDB's names are case-insensitive: "Age" and "age" are the same column
        twin = seen.setdefault(col.casefold(), col)
        if twin != col or columns.count(col) > 1:
            raise BadName(f"{path}: column {col!r} appears twice in the header (as {twin!r})")
    for role, col in (("entity", entity), ("timestamp", timestamp)):
        if col not in columns:
            raise BadInput(
                f"{path}: the {role} column {col!r} is missing (columns: {', '.join(columns)})"
            )
    if existing is not None:
        missing = [c for c in existing if c not in columns]
        if missing:
            raise BadInput(f"{path}: column {missing[0]!r} of the table is missing from the file")
        extra = [c for c in columns if c not in existing]
        if extra:
            raise BadInput(
                f"{path}: column {extra[0]!r} is not in the table (columns: {', '.join(existing)})"
            )

    with Staging(src, is_text) as staging:
        types = dict(existing) if existing else _infer(staging, entity, timestamp)
        types[timestamp] = "TIMESTAMP"
        for col, row in staging.first_unconvertible(types).items():
            if row is not None:
                what = "a valid timestamp" if col == timestamp else f"a valid {types[col]}"
                raise BadInput(f"{path}: {_where(row, is_text)}, column {col!r}: "
                               f"{staging.value(col, row)!r} is not {what}")  # fmt: skip
        for col in (entity, timestamp):
            row = staging.first_null(col)
            if row is not None:
                raise BadInput(
                    f"{path}: {_where(row, is_text)}, column {col!r}: the value is missing"
                )
        typed = staging.typed(types)
    return Prepared(typed, {c: types[c] for c in columns}, typed.num_rows)


def _infer(staging: Staging, entity: str, timestamp: str) -> dict[str, str]:
    """Column types for a new table: from Parquet's schema, or from the CSV's text."""
    if not staging.is_text:
        desc = staging.source_types()
        return {c: desc[c] for c in staging.columns}
    types = {}
    for c, (n, n_int, n_dbl) in zip(staging.columns, staging.text_counts(), strict=True):
        if c == timestamp:
            types[c] = "TIMESTAMP"
        elif n > 0 and n_int == n:
            types[c] = "BIGINT"
        elif n > 0 and n_dbl == n:
            types[c] = "DOUBLE"
        elif c != entity and n > 0 and n_dbl >= NUMERIC_MAJORITY * n:
            types[c] = "DOUBLE"  # mostly numbers: the others are errors, reported by row
        else:
            types[c] = "VARCHAR"
    return types


def _where(row: int, is_text: bool) -> str:
    return f"row {row} (line {row + 1})" if is_text else f"row {row}"
